"""A text-only policy's checkpoint records how it read frames, and every surface reads them that way again.

- ``training.common.observation_fields``: nothing for an image policy; ``observation="text"`` plus
  the tagger's vocabulary and tags per frame for a text-only one;
- the manifest written from them round-trips, and ``build_temporal_graph`` (used by ``ask``,
  ``eval`` and the trainers) then tags frames over that vocabulary with the searcher's encoder.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from agent_tools.graphs import AgentRunner, build_temporal_graph
from agent_tools.policies import ScriptedPolicy
from agent_tools.policies.manifest import PolicyManifest, read_manifest
from tests.agent_fakes import FakeSearcher, answer, seek_call


def test_observation_fields_follow_the_policy():
    from training.common import observation_fields

    assert observation_fields(SimpleNamespace(text_only=False, tagger=None)) == {}
    assert observation_fields(SimpleNamespace(text_only=True, tagger=None)) == {"observation": "text"}
    tagger = SimpleNamespace(vocabulary=["a red car", "a blue car"], top_k=2)
    fields = observation_fields(SimpleNamespace(text_only=True, tagger=tagger))
    assert fields == {"observation": "text", "tag_vocabulary": ["a red car", "a blue car"], "tag_top_k": 2}


def test_written_text_manifest_round_trips(tmp_path):
    from training.common import checkpoint_manifest, observation_fields, write_run_files

    tagger = SimpleNamespace(vocabulary=["a red car", "a blue car"], top_k=1)
    fields = observation_fields(SimpleNamespace(text_only=True, tagger=tagger))
    write_run_files(tmp_path, checkpoint_manifest(PolicyManifest(name="base"), tmp_path, trainer="sft", **fields))
    m = read_manifest(tmp_path)
    assert (m.observation, m.tag_vocabulary, m.tag_top_k) == ("text", ["a red car", "a blue car"], 1)


class _TaggableSearcher(FakeSearcher):
    """FakeSearcher plus an encoder and stored embeddings: frames before 30 s are red, after blue."""

    def __init__(self):
        super().__init__(duration=60.0)
        ts = np.arange(0, 60, 0.5)
        emb = np.zeros((len(ts), 2), np.float32)
        emb[ts < 30, 0] = 1.0
        emb[ts >= 30, 1] = 1.0
        self._emb = SimpleNamespace(timestamps=ts, embeddings_f32=emb)
        words = {"a red car": [1.0, 0.0], "a blue car": [0.0, 1.0]}
        self.encoder = SimpleNamespace(encode_text=lambda texts: np.array([words[t] for t in texts], np.float32))

    def embeddings(self, video):
        return self._emb


def test_graph_tags_frames_over_the_manifest_vocabulary():
    manifest = PolicyManifest(observation="text", tag_vocabulary=["a red car", "a blue car"], tag_top_k=1)
    policy = ScriptedPolicy([seek_call("car", 30, 50, 2), answer("blue")], text_only=True, manifest=manifest)
    graph = build_temporal_graph(policy, _TaggableSearcher(), max_turns=3, preview_frames=2)  # no observation given
    rollout = AgentRunner(graph, max_turns=3).run("What colour is the car at the end?", "v.mp4")
    assert rollout.answer == "blue"
    preview = [b["text"] for b in policy.calls[0]["messages"][-1]["content"] if b["text"][:1].isdigit()]
    assert preview == ["20.0s: a red car 1.00", "40.0s: a blue car 1.00"]  # uniform preview of 0-60 s
    tool = "\n".join(b["text"] for b in policy.calls[1]["messages"][-1]["content"])
    lines = [ln for ln in tool.splitlines() if "(score" in ln]
    assert len(lines) == 2 and all(ln.endswith("a blue car 1.00") for ln in lines)  # 30-50 s: all blue
