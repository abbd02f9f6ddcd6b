"""``videoseek eval`` end to end on a world whose answers are forced, against hand-computed metrics.

The forced world: one 40 s video at 2 fps (80 stored frames at 0, 0.5, ..., 39.5 s) with a red
square on screen over [10, 20) s and a red "0" over [25, 30) s. The encoder is hand-made
(:class:`ColourEncoder`): a frame's vector is one-hot of its dominant event colour plus an
"object" unit, so all frames of both events are exact duplicates and empty frames are
orthogonal to every query. Numbers are worked out in the comments; the temporal P/R/F1 rule is
T*'s ``calculate_prf`` (mll-lab-nu/TStar ``LVHaystackBench/val_tstar_results.py``: a prediction or
GT time counts when within 5 s of the other set).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent_tools.evaluation import read_predictions, run_eval
from agent_tools.world import Background, Event, WorldConfig, make_world
from agent_tools.world.scene import COLOURS

_NAMES = list(COLOURS)


class ColourEncoder:
    """dims: 6 colours, "object", "nothing"; deterministic and exact (see the module docstring)."""

    name = "colour-test"
    trained = True
    dim = 8
    image_size = 32
    cache_key = "colour-test-v1"

    def encode_images(self, images, batch_size: int = 64):
        arr = np.stack([np.asarray(im.convert("RGB")) if hasattr(im, "convert") else np.asarray(im) for im in images])
        out = np.zeros((len(arr), self.dim), np.float32)
        for i, img in enumerate(arr.astype(np.int32)):
            frac = [np.mean(np.abs(img - np.array(c)).sum(-1) < 90) for c in COLOURS.values()]
            if max(frac) > 0.01:
                out[i, int(np.argmax(frac))] = 1.0
                out[i, 6] = 1.0
            else:
                out[i, 7] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_text(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            words = t.lower().replace("?", " ").split()
            for j, c in enumerate(_NAMES):
                out[i, j] = float(c in words)
            out[i, 7 if "nothing" in words else 6] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def forced_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("forced")
    events = [
        Event(kind="shape", colour="red", start=10.0, end=20.0, shape="square", action="appears", x=0.5, y=0.5, event_id="v-e0"),
        Event(kind="number", colour="red", start=25.0, end=30.0, digit="0", size=0.45, event_id="v-e1"),
    ]
    video = {"video_id": "test-000", "split": "test", "duration": 40.0, "needle": False,
             "background": Background((110, 110, 110), (90, 90, 90), []).__dict__, "events": [e.to_dict() for e in events]}
    make_world(root, WorldConfig(seed=3, n_train=0, n_test=1, min_duration=40, max_duration=40, needle_videos=0),
               plan={"test": [video]})
    return root


def _run(world, name, out, methods):
    return run_eval(world / "test" / name, world / "videos", out, encoder=ColourEncoder(), methods=methods,
                    cache_dir=out / "cache", k=4, progress=False)


def test_haystack_metrics_equal_hand_computed(forced_world, tmp_path):
    res = _run(forced_world, "lv_haystack.json", tmp_path / "hay", ["uniform", "topk", "dpp", "dpp-legacy"])
    m = res["metrics"]["haystack"]
    # GT keyframes: one a second inside [10, 20) -> 10, 11, ..., 19 s.
    # uniform: indices round(linspace(0, 79, 4)) = 0, 26, 53, 79 -> 0, 13, 26.5, 39.5 s.
    #   precision: only 13 is within 5 s of a GT time -> 1/4; recall: 10..18 are within 5 s of 13 -> 9/10
    assert m["uniform"]["precision"] == pytest.approx(0.25)
    assert m["uniform"]["recall"] == pytest.approx(0.9)
    assert m["uniform"]["f1"] == pytest.approx(2 * 0.25 * 0.9 / 1.15)
    # topk: every event frame ties at the top; the stable sort keeps the first four: 10, 10.5, 11, 11.5
    #   precision 1; recall: 10..16 within 5 s of 11.5 -> 7/10; F1 = 1.4 / 1.7
    assert m["topk"]["precision"] == pytest.approx(1.0)
    assert m["topk"]["recall"] == pytest.approx(0.7)
    assert m["topk"]["f1"] == pytest.approx(1.4 / 1.7)
    # dpp: greedy takes 10 s; every other event frame is its duplicate, so the fill takes the most
    #   relevant frames (all event frames, relevance 1) farthest in time: 29.5, then 19.5, then 14.5.
    #   precision 3/4 (29.5 is 10.5 s from 19); recall 1; F1 = 1.5 / 1.75
    assert m["dpp"]["precision"] == pytest.approx(0.75)
    assert m["dpp"]["recall"] == pytest.approx(1.0)
    assert m["dpp"]["f1"] == pytest.approx(1.5 / 1.75)
    # dpp-legacy (floor 1e-4, time-first fill): 10, then 39.5 (an empty frame, relevance 0), then
    #   25 (ties 24.5/25 at 14.5 s; relevance breaks it), then 0 -> precision 1/4, recall 6/10 (10..15)
    assert m["dpp-legacy"]["precision"] == pytest.approx(0.25)
    assert m["dpp-legacy"]["recall"] == pytest.approx(0.6)
    preds = {p.method: p for p in read_predictions(tmp_path / "hay" / "predictions.jsonl")}
    assert preds["uniform"].timestamps == [0.0, 13.0, 26.5, 39.5]
    assert preds["dpp"].timestamps == [10.0, 14.5, 19.5, 29.5]
    assert preds["dpp-legacy"].timestamps == [0.0, 10.0, 25.0, 39.5]
    # every method saw a red frame, and only the red option matches it fully -> all answer right
    assert all(m[k]["accuracy"] == 1.0 for k in m)
    assert (tmp_path / "hay" / "report.md").read_text().count("| dpp |") == 1
    assert (tmp_path / "hay" / "haystack.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "hay" / "metrics.json").read_text())
    assert saved["run"]["encoder"] == "colour-test" and saved["metrics"]["haystack"]["dpp"]["f1"] == pytest.approx(1.5 / 1.75)


def test_resume_skips_finished_items(forced_world, tmp_path):
    out = tmp_path / "mcq"
    first = _run(forced_world, "longvideobench.json", out, ["uniform"])
    assert first["skipped"] == 0 and first["metrics"]["mcq"]["uniform"]["accuracy"] == 1.0
    lines = (out / "predictions.jsonl").read_text().splitlines()
    second = _run(forced_world, "longvideobench.json", out, ["uniform", "topk"])
    assert second["skipped"] == len(lines) == 1
    again = (out / "predictions.jsonl").read_text().splitlines()
    assert again[: len(lines)] == lines and len(again) == 2  # only topk's line was added
    assert set(second["metrics"]["mcq"]) == {"uniform", "topk"}


@pytest.mark.slow
def test_grounding_through_the_corpus_index(forced_world, tmp_path):
    pytest.importorskip("faiss")
    res = _run(forced_world, "tvr.jsonl", tmp_path / "tvr", ["retrieval"])
    g = res["metrics"]["grounding"]["retrieval"]
    # one video: VR R@1 = 1. Both descriptions mention red; frames of both events tie, so both
    # queries get [10, 20) first (the first peak) and [25, 30) second:
    # query 0 (square, GT [10, 20)): top-1 IoU 1; query 1 (digit, GT [25, 30)): top-1 IoU 0, top-5 IoU 1
    assert g["VR R@1"] == 1.0
    assert g["SVMR R@1,IoU=0.5"] == pytest.approx(0.5)
    assert g["SVMR R@5,IoU=0.7"] == pytest.approx(1.0)
    assert g["SVMR mIoU"] == pytest.approx(0.5)
    assert g["VCMR R@1,IoU=0.5"] == pytest.approx(0.5)


def test_cli_writes_the_report(tmp_path):
    from typer.testing import CliRunner

    from agent_tools.cli import app

    world = tmp_path / "w"
    make_world(world, WorldConfig(seed=1, n_train=0, n_test=1, min_duration=30, max_duration=30, needle_videos=0,
                                  min_event_s=4, max_event_s=6))
    args = ["eval", str(world / "test" / "longvideobench.json"), "--videos", str(world / "videos"),
            "--out", str(tmp_path / "out"), "--encoder", "tiny-untrained", "--methods", "uniform,dpp",
            "--cache-dir", str(tmp_path / "cache"), "--no-progress", "-k", "4"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "| uniform |" in r.output and "| dpp |" in r.output
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"predictions.jsonl", "metrics.json", "report.md", "mcq.png"}
    bad = CliRunner().invoke(app, [a if a != "uniform,dpp" else "bogus" for a in args])
    assert bad.exit_code == 2 and "unknown method" in bad.output


def test_a_policy_runs_through_the_temporal_graph(forced_world, tmp_path):
    from agent_tools.policies import ScriptedPolicy

    item = json.loads((forced_world / "test" / "lv_haystack.json").read_text())[0]
    call = '{"name": "seek_video_frames", "arguments": {"query": "a square", "start_time": 9, "end_time": 21, "num_frames": 4}}'
    policy = ScriptedPolicy([f"<think>find it</think><tool_call>{call}</tool_call>",
                             f"<think>it is red</think><answer>{item['answer']}</answer>"])
    res = run_eval(forced_world / "test" / "lv_haystack.json", forced_world / "videos", tmp_path / "pol",
                   encoder=ColourEncoder(), methods=[], policy=policy, policy_label="scripted",
                   cache_dir=tmp_path / "cache", k=4, progress=False)
    row = res["metrics"]["haystack"]["scripted"]
    assert row["accuracy"] == 1.0 and row["errors"] == 0
    (pred,) = read_predictions(tmp_path / "pol" / "predictions.jsonl")
    # the seek inside [9, 21] returned the square's frames: 10 s first (greedy), then the fill
    assert {10.0, 19.5}.issubset(pred.timestamps) and pred.extra["turns"] == 2
    assert len(policy.calls) == 2 and "A. a " in str(policy.calls[0]["messages"])  # lettered options


def test_a_text_only_policy_reads_the_frames_it_was_trained_on_as_tags(forced_world, tmp_path):
    """A text-mode checkpoint's manifest (observation "text" + tag vocabulary) drives the eval's graph:
    the policy gets text lines tagged over that vocabulary by the run's encoder, never a frame."""
    from agent_tools.policies import ScriptedPolicy
    from agent_tools.policies.manifest import PolicyManifest

    item = json.loads((forced_world / "test" / "lv_haystack.json").read_text())[0]
    call = '{"name": "seek_video_frames", "arguments": {"query": "a square", "start_time": 9, "end_time": 21, "num_frames": 4}}'
    manifest = PolicyManifest(observation="text", tag_vocabulary=["red", "blue", "nothing"], tag_top_k=1,
                              max_turns=3, preview_frames=2)
    policy = ScriptedPolicy([f"<think>find it</think><tool_call>{call}</tool_call>",
                             f"<think>it is red</think><answer>{item['answer']}</answer>"],
                            text_only=True, manifest=manifest)
    res = run_eval(forced_world / "test" / "lv_haystack.json", forced_world / "videos", tmp_path / "txt",
                   encoder=ColourEncoder(), methods=[], policy=policy, policy_label="text",
                   cache_dir=tmp_path / "cache", k=4, progress=False)
    assert res["metrics"]["haystack"]["text"]["accuracy"] == 1.0
    first, second = (c["messages"] for c in policy.calls)
    blocks = [b for m in first + second if isinstance(m.get("content"), list) for b in m["content"]]
    assert blocks and all(b["type"] == "text" for b in blocks)  # no frame reference reached the policy
    # preview (2 frames, as the manifest says) at 10 s (the red square) and 30 s (after the red digit)
    preview = [ln for b in first[-1]["content"] for ln in b["text"].splitlines() if ln[:1].isdigit()]
    assert preview == ["10.0s: red 1.00", "30.0s: nothing 1.00"]
    # the search inside [9, 21] returned the red square's frames: each line tagged "red"
    lines = [ln for b in second[-1]["content"] for ln in b["text"].splitlines() if "(score" in ln]
    assert lines and lines[0].startswith("10.0s (score ") and lines[0].endswith("red 1.00")


def test_read_vocabulary_takes_world_or_a_file(tmp_path):
    from agent_tools.agent_cli import read_vocabulary
    from agent_tools.errors import InvalidArgumentError
    from agent_tools.observations import world_vocabulary

    assert read_vocabulary("world") == world_vocabulary()
    f = tmp_path / "tags.txt"
    f.write_text("a red car\n\na blue car\na red car\n")
    assert read_vocabulary(str(f)) == ["a red car", "a blue car"]  # blank lines and repeats dropped
    with pytest.raises(InvalidArgumentError, match="one tag per line"):
        read_vocabulary(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(InvalidArgumentError, match="holds no tag"):
        read_vocabulary(str(tmp_path / "empty.txt"))


def test_parse_choice_reads_policy_answers():
    from agent_tools.evaluation import parse_choice

    opts = ["a red square appears", "a blue square appears", "a green square appears"]
    assert parse_choice("B", opts) == "B"
    assert parse_choice("(C) because it is green", opts) == "C"
    assert parse_choice("The answer is a blue square appears.", opts) == "B"
    assert parse_choice("D", opts) is None  # only A-C exist
    assert parse_choice("", opts) is None
