"""Readers for public long-video benchmark annotation formats → :class:`EvalItem` lists.

Each reader takes the annotation file and the folder holding the videos and returns items
whose ``video_path`` is resolved (``None`` when the file is missing; the runner reports it).

| format | file | fields read |
|---|---|---|
| ``longvideobench`` | ``lvb_val.json`` (JSON list) | ``id``, ``video_id``, ``video_path``, ``question``, ``candidates``, ``correct_choice`` (index), ``duration`` |
| ``videomme`` | Video-MME JSON / JSONL / parquet export | ``question_id``, ``videoID``, ``question``, ``options`` (``"A. ..."``), ``answer`` (letter), ``duration`` (short/medium/long) |
| ``lv_haystack`` | T* format (``LVHaystackBench``) JSON list | ``video_id``, ``video_path``, ``question``, ``options`` (``"A) ...\\nB) ..."``), ``answer`` (letter), ``gt_frame_index`` (frames; times = index / the video's fps, as ``val_tstar_results.py`` does) |
| ``open_qa`` | ActivityNet-QA-style JSON list | ``question_id``, ``video_name``, ``question``, ``answer`` (+ optional ``answer_space``, ``hypothesis_template``) |
| ``tvr`` | ``tvr_*_release.jsonl`` | ``desc_id``, ``vid_name``, ``desc``, ``ts`` (``[st, ed]`` or 4+ windows), ``duration`` |
| ``charades_sta`` | ``charades_sta_test.txt`` | lines ``VID start end##sentence`` |
| ``activitynet_captions`` | ``val_1.json`` | ``{vid: {duration, timestamps: [[s, e], ...], sentences: [...]}}`` |
| ``didemo`` | ``test_data.json`` | ``annotation_id``, ``video``, ``description``, ``times`` (5-second segment indices ``[a, b]`` → ``[5a, 5(b+1)]`` s, four annotators) |

- :func:`read_benchmark` - read a file (format given or detected).
- :func:`detect_format` - guess the format from the file's name and first record.
- :data:`READERS` - name → reader function.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import InvalidArgumentError
from .items import LETTERS, EvalItem

__all__ = ["read_benchmark", "detect_format", "READERS", "resolve_video", "FORMATS"]

_VIDEO_EXT = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
DIDEMO_SEGMENT_S = 5.0


def resolve_video(video_dir: Path, name: str) -> Optional[Path]:
    """Find ``name`` (with or without an extension, with or without ActivityNet's ``v_``) under ``video_dir``."""
    base = Path(video_dir)
    cands = [base / name]
    stem = Path(name).name
    for ext in _VIDEO_EXT:
        cands.append(base / f"{stem}{ext}")
        if stem.startswith("v_"):
            cands.append(base / f"{stem[2:]}{ext}")
        else:
            cands.append(base / f"v_{stem}{ext}")
    for c in cands:
        if c.is_file():
            return c
    return None


def _load_json_or_jsonl(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"{str(path)!r} is neither JSON nor JSON Lines: {exc}") from exc


def _records(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pandas as pd  # optional; Video-MME ships parquet

        return pd.read_parquet(path).to_dict(orient="records")
    data = _load_json_or_jsonl(path)
    if isinstance(data, dict):
        for key in ("data", "annotations", "questions"):
            if isinstance(data.get(key), list):
                return data[key]
        raise InvalidArgumentError(f"{str(path)!r}: expected a list of records")
    return data


def _need(rec: dict, keys: tuple[str, ...], fmt: str, i: int) -> None:
    missing = [k for k in keys if k not in rec]
    if missing:
        raise InvalidArgumentError(f"{fmt} record {i} lacks field(s) {', '.join(missing)}; it has {', '.join(sorted(rec))}")


def _strip_letter(opt: str) -> str:
    return re.sub(r"^\s*[A-J]\s*[.):]\s*", "", str(opt)).strip()


def read_longvideobench(path: Path, video_dir: Path) -> list[EvalItem]:
    """LongVideoBench (``candidates`` + ``correct_choice`` index)."""
    items = []
    for i, r in enumerate(_records(path)):
        _need(r, ("video_id", "question", "candidates", "correct_choice"), "longvideobench", i)
        cands = [str(c) for c in r["candidates"]]
        items.append(EvalItem(
            item_id=str(r.get("id", f"{r['video_id']}-{i}")), task="mcq", video_id=str(r["video_id"]),
            video_path=resolve_video(video_dir, r.get("video_path") or r["video_id"]), question=r["question"],
            options=cands, answer=LETTERS[int(r["correct_choice"])], duration=r.get("duration"), source="longvideobench",
            meta={k: r[k] for k in ("question_category", "duration_group", "level") if k in r},
        ))
    return items


def read_videomme(path: Path, video_dir: Path) -> list[EvalItem]:
    """Video-MME (``options`` as ``"A. text"``, ``answer`` letter; the file is ``videoID``.mp4)."""
    items = []
    for i, r in enumerate(_records(path)):
        _need(r, ("question_id", "videoID", "question", "options", "answer"), "videomme", i)
        items.append(EvalItem(
            item_id=str(r["question_id"]), task="mcq", video_id=str(r["videoID"]),
            video_path=resolve_video(video_dir, str(r["videoID"])), question=r["question"],
            options=[_strip_letter(o) for o in r["options"]], answer=str(r["answer"]).strip()[:1].upper(),
            source="videomme", meta={k: r[k] for k in ("duration", "domain", "task_type", "sub_category") if k in r},
        ))
    return items


def _parse_tstar_options(options: Any) -> list[str]:
    if isinstance(options, list):
        return [_strip_letter(o) for o in options]
    parts = re.split(r"\n(?=\s*[A-J]\s*[).:])", str(options).strip())
    return [_strip_letter(p) for p in parts if p.strip()]


def read_lv_haystack(path: Path, video_dir: Path) -> list[EvalItem]:
    """LV-Haystack in T*'s format; GT times are filled in by the runner from the video's fps."""
    items = []
    for i, r in enumerate(_records(path)):
        _need(r, ("video_id", "question", "options", "answer", "gt_frame_index"), "lv_haystack", i)
        items.append(EvalItem(
            item_id=str(r.get("question_id", f"{r['video_id']}-{i}")), task="haystack", video_id=str(r["video_id"]),
            video_path=resolve_video(video_dir, Path(str(r.get("video_path") or r["video_id"])).name),
            question=r["question"], options=_parse_tstar_options(r["options"]), answer=str(r["answer"]).strip()[:1].upper(),
            gt_frame_index=[int(x) for x in r["gt_frame_index"]], source="lv_haystack",
            meta={k: r[k] for k in ("duration_group", "needle") if k in r},
        ))
    return items


def read_open_qa(path: Path, video_dir: Path) -> list[EvalItem]:
    """Open-ended QA with exact answers (ActivityNet-QA fields, question and answer merged)."""
    items = []
    for i, r in enumerate(_records(path)):
        _need(r, ("question_id", "video_name", "question", "answer"), "open_qa", i)
        items.append(EvalItem(
            item_id=str(r["question_id"]), task="open", video_id=str(r["video_name"]),
            video_path=resolve_video(video_dir, str(r["video_name"])), question=r["question"], answer=str(r["answer"]),
            answer_space=r.get("answer_space"), hypothesis_template=r.get("hypothesis_template"), source="open_qa",
            meta={"type": r.get("type")},
        ))
    return items


def _windows(ts: Any) -> list[tuple[float, float]]:
    if ts and isinstance(ts[0], (list, tuple)):
        return [(float(a), float(b)) for a, b in ts]
    return [(float(ts[0]), float(ts[1]))]


def read_tvr(path: Path, video_dir: Path) -> list[EvalItem]:
    """TVR JSON Lines (one query per line)."""
    items = []
    for i, r in enumerate(_records(path)):
        _need(r, ("desc_id", "vid_name", "desc", "ts"), "tvr", i)
        items.append(EvalItem(
            item_id=str(r["desc_id"]), task="grounding", video_id=str(r["vid_name"]),
            video_path=resolve_video(video_dir, str(r["vid_name"])), question=r["desc"], gt_windows=_windows(r["ts"]),
            duration=r.get("duration"), source="tvr", meta={"type": r.get("type")},
        ))
    return items


def read_charades_sta(path: Path, video_dir: Path) -> list[EvalItem]:
    """Charades-STA text lines ``VID start end##sentence``."""
    items = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        head, sep, sentence = line.partition("##")
        parts = head.split()
        if not sep or len(parts) != 3:
            raise InvalidArgumentError(f"charades_sta line {i + 1} is not 'VID start end##sentence': {line!r}")
        vid, s, e = parts[0], float(parts[1]), float(parts[2])
        items.append(EvalItem(
            item_id=f"{vid}-{i}", task="grounding", video_id=vid, video_path=resolve_video(video_dir, vid),
            question=sentence.strip(), gt_windows=[(s, e)], source="charades_sta",
        ))
    return items


def read_activitynet_captions(path: Path, video_dir: Path) -> list[EvalItem]:
    """ActivityNet Captions (``{vid: {duration, timestamps, sentences}}``); one item per sentence."""
    data = _load_json_or_jsonl(path)
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{str(path)!r}: ActivityNet Captions is a JSON object keyed by video id")
    items = []
    for vid, r in data.items():
        _need(r, ("timestamps", "sentences"), "activitynet_captions", len(items))
        for j, (ts, sent) in enumerate(zip(r["timestamps"], r["sentences"])):
            items.append(EvalItem(
                item_id=f"{vid}-{j}", task="grounding", video_id=vid, video_path=resolve_video(video_dir, vid),
                question=sent.strip(), gt_windows=[(float(ts[0]), float(ts[1]))], duration=r.get("duration"),
                source="activitynet_captions",
            ))
    return items


def read_didemo(path: Path, video_dir: Path) -> list[EvalItem]:
    """DiDeMo: ``times`` are 5-second segment indices per annotator (usually four)."""
    items = []
    for i, r in enumerate(_records(path)):
        _need(r, ("video", "description", "times"), "didemo", i)
        wins = [(DIDEMO_SEGMENT_S * a, DIDEMO_SEGMENT_S * (b + 1)) for a, b in r["times"]]
        vid = Path(str(r["video"])).stem
        items.append(EvalItem(
            item_id=str(r.get("annotation_id", i)), task="grounding", video_id=vid,
            video_path=resolve_video(video_dir, str(r["video"])), question=r["description"], gt_windows=wins,
            source="didemo",
        ))
    return items


READERS: dict[str, Callable[[Path, Path], list[EvalItem]]] = {
    "longvideobench": read_longvideobench,
    "videomme": read_videomme,
    "lv_haystack": read_lv_haystack,
    "open_qa": read_open_qa,
    "tvr": read_tvr,
    "charades_sta": read_charades_sta,
    "activitynet_captions": read_activitynet_captions,
    "didemo": read_didemo,
}
FORMATS = tuple(READERS)


def detect_format(path: Path) -> str:
    """Guess the format from the first record's fields.

    Raises:
        InvalidArgumentError: Nothing matches (the message lists the formats).
    """
    path = Path(path)
    if path.suffix == ".txt":
        return "charades_sta"
    data = _load_json_or_jsonl(path) if path.suffix != ".parquet" else _records(path)
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "timestamps" in v for v in list(data.values())[:3]):
        return "activitynet_captions"
    recs = data if isinstance(data, list) else _records(path)
    first = recs[0] if recs else {}
    keys = set(first)
    rules = [
        ("lv_haystack", {"gt_frame_index", "options"}),
        ("longvideobench", {"candidates", "correct_choice"}),
        ("videomme", {"videoID", "options", "answer"}),
        ("tvr", {"vid_name", "desc", "ts"}),
        ("didemo", {"video", "description", "times"}),
        ("open_qa", {"video_name", "question", "answer"}),
    ]
    for name, need in rules:
        if need <= keys:
            return name
    raise InvalidArgumentError(
        f"cannot tell the format of {str(path)!r} (first record's fields: {', '.join(sorted(keys)) or 'none'}); "
        f"pass one of: {', '.join(FORMATS)}"
    )


def read_benchmark(path: str | Path, video_dir: str | Path, fmt: Optional[str] = None) -> list[EvalItem]:
    """Read a benchmark annotation file.

    Args:
        path: The annotation file.
        video_dir: Folder with the videos.
        fmt: One of :data:`FORMATS`, or None to detect.

    Returns:
        The items, in file order.

    Raises:
        InvalidArgumentError: Missing file, unknown format, or a record without the format's fields.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"annotation file {str(path)!r} does not exist")
    fmt = fmt or detect_format(path)
    if fmt not in READERS:
        raise InvalidArgumentError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    items = READERS[fmt](path, Path(video_dir))
    if not items:
        raise InvalidArgumentError(f"{str(path)!r} holds no items")
    return items
