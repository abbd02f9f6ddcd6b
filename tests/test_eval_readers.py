"""Each evaluation reader loads a sample written from its public format's documentation.

Samples (tests/data/eval/) follow the published files: LongVideoBench ``lvb_val.json``, Video-MME's
JSON export, T*'s LV-Haystack format (mll-lab-nu/TStar ``LVHaystackBench/val_tstar_results.py`` reads
``video_path``, ``gt_frame_index``), ActivityNet-QA, TVR ``data/tvr_val_release.jsonl``
(jayleicn/TVRetrieval), Charades-STA ``charades_sta_test.txt``, ActivityNet Captions ``val_1.json``
and DiDeMo ``test_data.json`` (5-second segment indices).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_tools.errors import InvalidArgumentError
from agent_tools.evaluation.readers import FORMATS, detect_format, read_benchmark

DATA = Path(__file__).parent / "data" / "eval"

SAMPLES = {
    "longvideobench": "longvideobench_sample.json",
    "videomme": "videomme_sample.json",
    "lv_haystack": "lv_haystack_sample.json",
    "open_qa": "open_qa_sample.json",
    "tvr": "tvr_sample.jsonl",
    "charades_sta": "charades_sta_sample.txt",
    "activitynet_captions": "activitynet_captions_sample.json",
    "didemo": "didemo_sample.json",
}


def test_every_format_has_a_sample():
    assert set(SAMPLES) == set(FORMATS)


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_detect_format(fmt):
    assert detect_format(DATA / SAMPLES[fmt]) == fmt


def test_longvideobench(tmp_path):
    (tmp_path / "86CxyhFV9MI.mp4").write_bytes(b"x")
    items = read_benchmark(DATA / SAMPLES["longvideobench"], tmp_path)
    assert [it.task for it in items] == ["mcq", "mcq"]
    a, b = items
    assert a.item_id == "86CxyhFV9MI_0" and a.answer == "B" and a.options[1] == "I'm not a sinner either"
    assert a.video_path == tmp_path / "86CxyhFV9MI.mp4"
    assert b.answer == "E" and len(b.options) == 5 and b.video_path is None  # missing file -> None


def test_videomme_strips_letters():
    items = read_benchmark(DATA / SAMPLES["videomme"], DATA)
    assert items[0].item_id == "001-1" and items[0].video_id == "fFjv93ACGo8"
    assert items[0].options == ["Apples.", "Candles.", "Berries.", "The three kinds are of the same number."]
    assert items[0].answer == "C" and items[1].answer == "A"


def test_lv_haystack_options_and_frames():
    (it,) = read_benchmark(DATA / SAMPLES["lv_haystack"], DATA)
    assert it.task == "haystack" and it.options == ["white", "black", "red", "green", "blue"]
    assert it.answer == "A" and it.gt_frame_index == [3250, 3412]
    assert it.prompt().splitlines()[1] == "A. white"


def test_open_qa():
    items = read_benchmark(DATA / SAMPLES["open_qa"], DATA)
    assert [(it.task, it.answer) for it in items] == [("open", "no"), ("open", "1")]


def test_grounding_formats():
    tvr = read_benchmark(DATA / SAMPLES["tvr"], DATA)
    assert tvr[0].item_id == "90200" and tvr[0].gt_windows == [(16.48, 33.87)] and tvr[0].task == "grounding"
    cha = read_benchmark(DATA / SAMPLES["charades_sta"], DATA)
    assert cha[0].video_id == "3MSZA" and cha[0].gt_windows == [(24.3, 30.4)] and cha[0].question == "person turn a light on."
    anet = read_benchmark(DATA / SAMPLES["activitynet_captions"], DATA)
    assert len(anet) == 3 and anet[1].gt_windows == [(13.79, 54.32)] and anet[1].question.startswith("The coach")
    (dd,) = read_benchmark(DATA / SAMPLES["didemo"], DATA)
    # segment indices [a, b] -> [5a, 5(b+1)] seconds, one window per annotator
    assert dd.gt_windows == [(10.0, 15.0), (10.0, 15.0), (10.0, 20.0), (5.0, 15.0)]
    assert dd.video_id == "10015567@N08_3655084291_d8b58466fa"


def test_bad_input_is_explained(tmp_path):
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        read_benchmark(tmp_path / "nope.json", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"foo": 1}]')
    with pytest.raises(InvalidArgumentError, match="cannot tell the format"):
        read_benchmark(bad, tmp_path)
    with pytest.raises(InvalidArgumentError, match="lacks field"):
        read_benchmark(bad, tmp_path, fmt="tvr")
    with pytest.raises(InvalidArgumentError, match="unknown format"):
        read_benchmark(DATA / SAMPLES["tvr"], tmp_path, fmt="msrvtt")
