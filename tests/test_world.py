"""The synthetic world: deterministic plans, frames that show their events, annotations that agree
with the plan and load through the evaluation readers, and the world encoder's checkpoint path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent_tools.evaluation.readers import read_benchmark
from agent_tools.world import COLOURS, Event, WorldConfig, load_manifest, make_world, plan_world
from agent_tools.world.pairs import caption_pairs

QUICK_STEPS = 100  # tag-accuracy test: CPU seconds
SMALL = WorldConfig(seed=5, n_train=2, n_test=2, min_duration=60, max_duration=90, needle_videos=1,
                    needle_duration=300, events_per_minute=3, min_event_s=4, max_event_s=8)


def test_plan_is_deterministic_by_seed():
    a, b = plan_world(SMALL), plan_world(SMALL)
    assert a == b
    assert plan_world(SMALL.model_copy(update={"seed": 6})) != a


def test_plan_constraints():
    plan = plan_world(SMALL)
    for split, videos in plan.items():
        captions = [e["caption"] for v in videos for e in v["events"]]
        assert len(captions) == len(set(captions)), "captions are unique inside a split"
        for v in videos:
            evs = [Event.from_dict(e) for e in v["events"]]
            slots = [(e.shape, e.action) if e.kind == "shape" else ("number", e.colour) for e in evs]
            assert len(slots) == len(set(slots)), "one answer per question inside a video"
            for a, b in zip(evs, evs[1:]):
                assert a.end <= b.start, "events do not overlap"
            assert all(0 <= e.start < e.end <= v["duration"] for e in evs)
            needles = [e for e in evs if e.needle]
            if v["needle"]:
                assert v["duration"] == 300 and len(needles) == 1
                assert needles[0].end - needles[0].start == pytest.approx(2.0) and needles[0].action == "appears"
            else:
                assert not needles


def _colour_share(rgb: np.ndarray, colour: str) -> float:
    return float(np.mean(np.abs(rgb.astype(int) - np.array(COLOURS[colour])).sum(-1) < 90))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    make_world(root, SMALL.model_copy(update={"n_train": 0, "n_test": 1, "needle_videos": 1}))
    return root


def test_frames_show_their_events(world):
    from agent_tools.video import open_video

    m = load_manifest(world)
    v = m["videos"][0]
    with open_video(world / "videos" / f"{v['video_id']}.mp4") as r:
        assert r.info.duration == pytest.approx(v["duration"], abs=0.6) and r.info.width == SMALL.size
        for ev in v["events"]:
            (_, on), = r.frames_at([(ev.start + ev.end) / 2])
            assert _colour_share(on, ev.colour) > 0.01, ev.caption
        # a second before the first event nothing is on screen
        first = v["events"][0]
        (_, off), = r.frames_at([max(0.0, first.start - 1.0)])
        assert max(_colour_share(off, c) for c in COLOURS) < 0.002


def test_annotations_agree_with_the_plan_and_load(world):
    m = load_manifest(world)
    events = {e.event_id: e for v in m["videos"] for e in v["events"]}
    vids = world / "videos"
    lvb = read_benchmark(world / "test" / "longvideobench.json", vids)
    assert lvb and all(it.video_path is not None for it in lvb)
    for it in lvb:
        ev = events[it.item_id]
        assert it.options[it.answer_index] == ev.caption and not ev.needle
        assert sum(o.split()[1] == ev.colour for o in it.options) == 1  # one option has the right colour
    hay = read_benchmark(world / "test" / "lv_haystack.json", vids)
    needles = [it for it in hay if it.meta.get("needle")]
    assert len(needles) == 1
    for it in hay:
        ev = events[it.item_id]
        times = [i / SMALL.fps for i in it.gt_frame_index]
        assert all(ev.start <= t < ev.end for t in times) and it.options[it.answer_index] == ev.caption
    opn = read_benchmark(world / "test" / "open_qa.json", vids)
    for it in opn:
        ev = events[it.item_id]
        assert it.answer == ev.digit and it.hypothesis_template.format(it.answer) == ev.caption
    tvr = read_benchmark(world / "test" / "tvr.jsonl", vids)
    by_caption = {e.caption: e for e in events.values()}
    for it in tvr:
        assert it.gt_windows == [by_caption[it.question].window]
    test_events = [e for v in m["videos"] if v["split"] == "test" for e in v["events"]]
    assert len(tvr) == sum(not e.needle for e in test_events)
    dur = json.loads((world / "test" / "video2dur_idx.json").read_text())["world"]
    assert set(dur) == {v["video_id"] for v in m["videos"] if v["split"] == "test"}


def test_caption_pairs_are_deterministic_and_match():
    a_img, a_txt, a_cap = caption_pairs(12, seed=3, size=64)
    b_img, b_txt, b_cap = caption_pairs(12, seed=3, size=64)
    assert np.array_equal(a_img, b_img) and a_txt == b_txt and a_cap == b_cap
    for img, cap in zip(a_img, a_cap):
        if cap != "nothing happens":
            colour = cap.split()[1] if cap.startswith("a ") else cap.split()[-1]
            assert _colour_share(img, colour) > 0.01


def test_world_tiny_registry_entry_resolves_the_cache_dir(tmp_path, monkeypatch):
    from agent_tools.encoders.registry import get_spec, weights_status

    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(tmp_path))
    spec = get_spec("world-tiny")
    assert spec.local_dir == tmp_path / "encoders" / "world-tiny"
    ok, detail = weights_status(spec)
    assert not ok and "python -m training.world_encoder" in detail
    assert "SYNTHETIC WORLD ONLY" in spec.description


@pytest.mark.slow
def test_world_encoder_trains_and_loads(tmp_path, monkeypatch):
    pytest.importorskip("open_clip")
    from agent_tools.encoders import OpenClipEncoder
    from agent_tools.encoders.registry import get_spec, weights_status
    from training.world_encoder import train_world_encoder

    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(tmp_path))
    stale = tmp_path / "frames" / "ab" / "abcd" / "world-tiny-0123456789ab@2fps.npy"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old weights' embeddings")
    summary = train_world_encoder(steps=3, batch_size=16, pairs=64, log_every=0)
    assert summary["out_dir"] == str(tmp_path / "encoders" / "world-tiny")
    assert summary["stale_embeddings_removed"] == 1 and not stale.exists()
    tags = summary["tag_accuracy"]  # measured on held-out events after training
    assert tags["world"]["split"] == "test" and 0.0 <= tags["top1_attributes"] <= tags["topk_attributes"] <= 1.0
    spec = get_spec("world-tiny")
    assert weights_status(spec)[0]
    enc = OpenClipEncoder(spec, device="cpu")
    assert enc.trained and enc.image_size == 64 and enc.dim == 64
    v = enc.encode_text(["a red circle appears", "nothing happens"])
    assert v.shape == (2, 64) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


# -- tag accuracy (agent_tools.world.tags) ------------------------------------------------------


def test_attributes_name_what_one_frame_shows():
    from agent_tools.errors import InvalidArgumentError
    from agent_tools.world.tags import attributes

    assert attributes("a red circle moves from left to right") == ("shape", "circle", "red")
    assert attributes("a red circle appears") == attributes("a red circle moves from right to left")
    assert attributes("the number 7 is shown in yellow") == ("number", "7", "yellow")
    assert attributes("nothing happens") == ("empty",)
    with pytest.raises(InvalidArgumentError, match="not a caption"):
        attributes("a dog")


def test_score_tags_by_hand():
    from agent_tools.observations import world_vocabulary
    from agent_tools.world.tags import score_tags

    vocab = world_vocabulary()
    v = len(vocab)
    ranked = [
        ["a red circle appears", "a blue circle appears"],  # exact
        ["a red circle moves from left to right", "a red circle appears"],  # attributes at 1, exact at 2
        ["a blue circle appears", "the number 7 is shown in red"],  # wrong shape colour; nothing right
        ["the number 7 is shown in red", "nothing happens"],  # exact number
    ]
    captions = ["a red circle appears", "a red circle appears", "a red circle appears", "the number 7 is shown in red"]
    got = score_tags(ranked, captions, vocab, top_k=2)
    assert got["frames"] == 4 and got["top_k"] == 2
    assert got["top1_exact"] == pytest.approx(2 / 4)
    assert got["top1_attributes"] == pytest.approx(3 / 4)
    assert got["topk_exact"] == pytest.approx(3 / 4)
    assert got["topk_attributes"] == pytest.approx(3 / 4)
    assert got["top1_colour"] == pytest.approx(3 / 4)
    # chance: one right caption in v; 3 captions share a shape and colour (3 actions), 1 for a number
    assert got["chance_top1_exact"] == pytest.approx(1 / v)
    assert got["chance_top1_attributes"] == pytest.approx((3 * 3 / v + 1 / v) / 4)
    p_shape2 = 1 - (v - 3) * (v - 4) / (v * (v - 1))  # 2 draws without replacement hit one of 3
    assert got["chance_topk_attributes"] == pytest.approx((3 * p_shape2 + 2 / v) / 4)


def test_tag_accuracy_maps_event_times_to_video_frames(world):
    """A tagger that knows the plan scores 1; one that answers for 20 s later scores near 0."""
    from agent_tools.observations import world_vocabulary
    from agent_tools.world.tags import tag_accuracy

    m = load_manifest(world)
    by_video = {f"{v['video_id']}.mp4": v["events"] for v in m["videos"]}
    vocab = world_vocabulary()

    def oracle(shift):
        def tagger(video, timestamps):
            evs = by_video[video.rsplit("/", 1)[-1]]
            out = []
            for t in timestamps:
                on = [e.caption for e in evs if e.active(t + shift)] or ["nothing happens"]
                out.append([(on[0], 1.0), ("nothing happens" if on[0] != "nothing happens" else vocab[0], 0.5)])
            return out

        return tagger

    right = tag_accuracy(oracle(0.0), world, vocab, split="test", top_k=2)
    n_events = sum(len(v["events"]) for v in m["videos"] if v["split"] == "test")
    assert right["events"] == n_events and right["frames"] == 3 * n_events
    assert right["top1_exact"] == right["top1_attributes"] == right["topk_exact"] == 1.0
    late = tag_accuracy(oracle(20.0), world, vocab, split="test", top_k=2)
    assert late["top1_attributes"] < 0.2


@pytest.mark.slow
def test_quickly_trained_encoder_tags_held_out_events_above_chance(tmp_path):
    """A short CPU training run already names the colour and the object of held-out events well above chance.

    The held-out events are the test split of ``eval_world_config`` (videos the encoder never
    saw; training frames are rendered on fresh random backgrounds). The full recipe's figures are
    in benchmarks/README.md (``bench_world_tags.py``).
    """
    pytest.importorskip("open_clip")
    from training.world_encoder import eval_world_config, evaluate_tags, train_world_encoder

    summary = train_world_encoder(tmp_path / "enc", steps=QUICK_STEPS, pairs=1500, threads=1, log_every=0, eval_tags=False)
    assert summary["threads"] == 1
    tags = evaluate_tags(tmp_path / "enc", eval_world_config(n_test=6), top_k=3)
    assert tags["events"] >= 15 and tags["frames"] == 3 * tags["events"]
    assert tags["top1_colour"] > 0.6  # chance 1/6
    assert tags["topk_attributes"] > 4 * tags["chance_topk_attributes"]
