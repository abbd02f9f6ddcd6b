"""Build the trainers' JSONL input files from the public datasets' annotation files.

Three converters, one sub-command each (``python -m training.prepare_data <kind> ...``):

- ``timesearch-grpo`` - TimeSearch-R RL rows (the files its ``configs/dataset.yaml`` lists:
  ``{"video", "question", "target": {"answer"}, "type", "duration"?}``; ``type`` is
  ``multiple_choice``, ``open_ended``, ``grounding`` (the answer is a JSON string
  ``{"start_time", "end_time"}``) or ``sequence``) -> our GRPO prompts
  ``{"question", "video", "answer", "problem_type", ...}``. A ``dataset.yaml`` is read as
  TimeSearch-R reads it: each ``json_path`` with ``sampling_strategy`` ``all``, ``random:N``
  or ``first:N`` (seeded).
- ``timesearch-sft`` - TimeSearch-R SFT rows (``{"video", "question"?, "messages": [...]}``, the
  shape its ``LazyVLDatasetSFT`` reads: assistant turns holding ``<think>``/``<tool_call>``/
  ``<answer>``; tool messages, if any, are dropped because the trainer regenerates them) -> our
  trajectories ``{"question", "video", "turns"}``.
- ``videosearch`` - VERIFIED FIG annotations (``hlchen23/VERIFIED`` ``fine-grained-anno/*-fig/*.jsonl``,
  the files VideoSearch-R1 trains on: ``{"video": id, "time": [s, e], "duration", "fig_desc", ...}``)
  or VideoSearch-R1's stage-2 ``train.minimal_top1.jsonl`` (``gt_video``, ``gt_time``,
  ``retrieved_video``, ``hard_negative_ids``) -> corpus rows
  ``{"query", "positive": {"video", "start", "end"}, "duration", "shown"?, "negatives"?}``.
  Without ``shown``/``negatives`` the trainer draws them from the corpus index.

Videos: ``--video-root`` is joined with each row's video (``--video-ext`` is appended to bare
ids such as VERIFIED's); the written path is relative to the output file, which is how the
trainers resolve it. ``--require-videos`` refuses rows whose file is missing.

- :func:`convert_timesearch_grpo`, :func:`convert_timesearch_sft`, :func:`convert_videosearch` -
  one row in, one row out (raise :class:`~training.errors.TrainingDataError` naming the problem).
- :func:`read_rows` - JSONL, JSON list or TimeSearch-R ``dataset.yaml`` mix.
- :func:`prepare` - files in, one JSONL out; returns the row count.
- :func:`main` - the command line.

Usage::

    python -m training.prepare_data timesearch-grpo configs/dataset.yaml --video-root /data/videos \\
        --out data/timesearch/grpo.jsonl
    python -m training.prepare_data videosearch charades_fig_train.jsonl --video-root /data/Charades \\
        --video-ext .mp4 --out data/videosearch/charades_train.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from training.errors import TrainingDataError

__all__ = [
    "TIMESEARCH_TYPES",
    "read_rows",
    "convert_timesearch_grpo",
    "convert_timesearch_sft",
    "convert_videosearch",
    "prepare",
    "main",
]

#: TimeSearch-R's question types (``time_r1/reward/v7.py`` ``general_answer_score``).
TIMESEARCH_TYPES = ("multiple_choice", "open_ended", "grounding", "sequence")


def _video_path(video: str, *, video_root: Optional[str], video_ext: str, out_dir: Path, where: str,
                require: bool) -> str:
    if not isinstance(video, str) or not video.strip():
        raise TrainingDataError(f"{where}: no video (expected a non-empty 'video' string)")
    name = video.strip()
    if video_ext and not Path(name).suffix:
        name += video_ext
    path = Path(video_root).expanduser() / name if video_root else Path(name)
    if require and not path.is_file():
        raise TrainingDataError(f"{where}: video {str(path)!r} does not exist (drop --require-videos to keep it)")
    if not path.is_absolute() and not video_root:
        return name  # already relative: kept as given (relative to the output file)
    return os.path.relpath(path.resolve(), out_dir.resolve())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def convert_timesearch_grpo(row: dict[str, Any], where: str = "row") -> dict[str, Any]:
    """A TimeSearch-R RL row -> our GRPO prompt row (video left as in the row).

    Args:
        row: ``{"video", "question", "target": {"answer"} or "answer", "type", ...}``.
        where: Name used in error messages.

    Returns:
        ``{"question", "video", "answer", "problem_type"}`` plus ``duration`` and ``id`` when
        present (grounding answers become ``{"start_time", "end_time"}``).

    Raises:
        TrainingDataError: Missing question/answer, an unknown type, or a grounding answer that
            is not a ``{"start_time", "end_time"}`` JSON object.
    """
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise TrainingDataError(f"{where}: no 'question' string")
    target = row.get("target")
    answer = target.get("answer") if isinstance(target, dict) else row.get("answer", target)
    if answer is None:
        raise TrainingDataError(f"{where}: no answer (expected 'target': {{'answer': ...}} or 'answer')")
    kind = row.get("type", row.get("problem_type"))
    if kind not in TIMESEARCH_TYPES:
        raise TrainingDataError(f"{where}: type {kind!r} is unknown; valid: {', '.join(TIMESEARCH_TYPES)}")
    if kind == "grounding":
        span = answer
        if isinstance(answer, str):
            try:
                span = json.loads(answer)
            except ValueError:
                span = None
        if not (isinstance(span, dict) and {"start_time", "end_time"} <= set(span)):
            raise TrainingDataError(
                f"{where}: a grounding answer must be a JSON object with start_time and end_time, got {answer!r}"
            )
        answer = {"start_time": float(span["start_time"]), "end_time": float(span["end_time"])}
    elif not isinstance(answer, str):
        answer = str(answer)
    out: dict[str, Any] = {"question": question, "video": row.get("video"), "answer": answer, "problem_type": kind}
    for key in ("duration", "id"):
        if row.get(key) is not None:
            out[key] = row[key]
    return out


def convert_timesearch_sft(row: dict[str, Any], where: str = "row") -> dict[str, Any]:
    """A TimeSearch-R SFT row (``messages``) -> our trajectory row (``turns``).

    Args:
        row: ``{"video", "question"?, "messages": [{"role", "content"}, ...]}``.
        where: Name used in error messages.

    Returns:
        ``{"question", "video", "turns"}``; the question is the row's, else the first user
        message's text.

    Raises:
        TrainingDataError: No messages, no assistant turn, or the last turn does not answer.
    """
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TrainingDataError(f"{where}: no 'messages' list")
    turns = [_text_of(m.get("content")).strip() for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    if not turns or not all(turns):
        raise TrainingDataError(f"{where}: needs assistant turns with text")
    if "<answer>" not in turns[-1]:
        raise TrainingDataError(f"{where}: the last assistant turn has no <answer>; the trainer replays whole episodes")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        users = [_text_of(m.get("content")).strip() for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        question = users[0] if users and users[0] else None
    if not question:
        raise TrainingDataError(f"{where}: no 'question' and no user message text")
    return {"question": question, "video": row.get("video"), "turns": turns}


def _span(raw: Any) -> Optional[tuple[float, float]]:
    if isinstance(raw, (list, tuple)) and len(raw) >= 2:
        try:
            s, e = float(raw[0]), float(raw[1])
        except (TypeError, ValueError):
            return None
        return (s, e) if e > s else None
    return None


def convert_videosearch(row: dict[str, Any], where: str = "row") -> dict[str, Any]:
    """A VERIFIED FIG row (or a VideoSearch-R1 stage-2 row) -> our corpus row (videos as ids).

    Args:
        row: VERIFIED ``{"video", "time", "duration", "fig_desc"}`` or VideoSearch-R1
            ``{"query", "gt_video", "gt_time", "gt_duration", "retrieved_video", "hard_negative_ids"}``.
        where: Name used in error messages.

    Returns:
        ``{"query", "positive": {"video", "start", "end"}, "duration"}`` plus ``shown`` (the
        retrieved video) and ``negatives`` (whole videos) when the row has them.

    Raises:
        TrainingDataError: No query, no video, or a time span that is not ``[start < end]``.
    """
    query = row.get("fig_desc", row.get("query"))
    if not isinstance(query, str) or not query.strip():
        raise TrainingDataError(f"{where}: no query (expected 'fig_desc' or 'query')")
    video = row.get("gt_video", row.get("video"))
    span = _span(row.get("gt_time", row.get("time")))
    if span is None:
        raise TrainingDataError(f"{where}: time {row.get('gt_time', row.get('time'))!r} is not [start, end] with start < end")
    out: dict[str, Any] = {"query": query.strip(), "positive": {"video": video, "start": span[0], "end": span[1]}}
    duration = row.get("gt_duration", row.get("duration"))
    if duration is not None:
        out["duration"] = float(duration)
    if row.get("retrieved_video"):
        out["shown"] = {"video": row["retrieved_video"]}
    if row.get("hard_negative_ids"):
        out["negatives"] = [{"video": v} for v in row["hard_negative_ids"]]
    return out


def _iter_file(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        raise TrainingDataError(f"annotation file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        rows = data if isinstance(data, list) else [data]
        for i, row in enumerate(rows):
            yield f"{path.name}[{i}]", row
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path.name}:{lineno}", json.loads(line)
            except ValueError as exc:
                raise TrainingDataError(f"{path.name}:{lineno}: not valid JSON ({exc})") from None


def read_rows(path: str | Path, *, seed: int = 42) -> list[tuple[str, dict[str, Any]]]:
    """``(where, row)`` from a JSONL/JSON file, or from every file of a TimeSearch-R ``dataset.yaml``.

    Args:
        path: The file. A ``.yaml`` holds ``datasets: [{json_path, sampling_strategy}]``;
            ``json_path`` is relative to the YAML's folder unless absolute.
        seed: Seed of ``random:N`` sampling.

    Returns:
        The rows with their ``file:line``.

    Raises:
        TrainingDataError: A missing file, bad JSON, or an unknown sampling strategy.
    """
    p = Path(path)
    if p.suffix not in (".yaml", ".yml"):
        return list(_iter_file(p))
    import yaml

    spec = yaml.safe_load(p.read_text()) or {}
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    for entry in spec.get("datasets", []):
        src = Path(entry["json_path"])
        rows = list(_iter_file(src if src.is_absolute() else p.parent / src))
        strategy = str(entry.get("sampling_strategy", "all"))
        match = re.fullmatch(r"(random|first):(\d+)", strategy)
        if strategy == "all":
            pass
        elif match and match.group(1) == "first":
            rows = rows[: int(match.group(2))]
        elif match:
            rows = rng.sample(rows, min(int(match.group(2)), len(rows)))
        else:
            raise TrainingDataError(f"{p.name}: sampling_strategy {strategy!r}; valid: all, random:N, first:N")
        out += rows
    if not out:
        raise TrainingDataError(f"{p.name}: no datasets listed")
    return out


_CONVERTERS: dict[str, tuple[Callable[[dict[str, Any], str], dict[str, Any]], str]] = {
    "timesearch-grpo": (convert_timesearch_grpo, ""),
    "timesearch-sft": (convert_timesearch_sft, ""),
    "videosearch": (convert_videosearch, ".mp4"),
}


def prepare(
    kind: str,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    video_root: Optional[str] = None,
    video_ext: Optional[str] = None,
    require_videos: bool = False,
    limit: Optional[int] = None,
    seed: int = 42,
) -> int:
    """Convert annotation files into one JSONL file for a trainer.

    Args:
        kind: ``timesearch-grpo``, ``timesearch-sft`` or ``videosearch``.
        inputs: Annotation files (JSONL, JSON, or a TimeSearch-R ``dataset.yaml``).
        out: The JSONL to write (its folder is created).
        video_root: Folder the rows' videos are relative to.
        video_ext: Extension added to bare video ids (default ``.mp4`` for ``videosearch``).
        require_videos: Refuse rows whose video file is missing.
        limit: Keep only the first N rows.
        seed: Seed of ``random:N`` sampling in a YAML mix.

    Returns:
        Rows written.

    Raises:
        TrainingDataError: On an unknown kind or an unusable row (names the file and line).
    """
    if kind not in _CONVERTERS:
        raise TrainingDataError(f"unknown kind {kind!r}; valid: {', '.join(_CONVERTERS)}")
    convert, default_ext = _CONVERTERS[kind]
    ext = default_ext if video_ext is None else video_ext
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for src in inputs:
        for where, row in read_rows(src, seed=seed):
            if not isinstance(row, dict):
                raise TrainingDataError(f"{where}: each row must be a JSON object")
            new = convert(row, where)
            holders = [new] if kind != "videosearch" else [new[k] for k in ("positive", "shown") if k in new]
            for holder in holders + list(new.get("negatives", [])):
                holder["video"] = _video_path(
                    holder["video"], video_root=video_root, video_ext=ext, out_dir=out_path.parent, where=where,
                    require=require_videos,
                )
            rows.append(new)
            if limit is not None and len(rows) >= limit:
                break
    out_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m training.prepare_data KIND FILE... --out OUT.jsonl [--video-root DIR]``."""
    from training.common import run_cli

    parser = argparse.ArgumentParser(prog="python -m training.prepare_data", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=list(_CONVERTERS))
    parser.add_argument("inputs", nargs="+", help="annotation files (JSONL, JSON, or TimeSearch-R dataset.yaml)")
    parser.add_argument("--out", required=True, help="JSONL file to write")
    parser.add_argument("--video-root", default=None, help="folder the rows' video paths are relative to")
    parser.add_argument("--video-ext", default=None, help="extension added to bare video ids (videosearch: .mp4)")
    parser.add_argument("--require-videos", action="store_true", help="refuse rows whose video file is missing")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N rows")
    parser.add_argument("--seed", type=int, default=42, help="seed of random:N sampling in a dataset.yaml")
    ns = parser.parse_args(argv)

    def run() -> int:
        n = prepare(
            ns.kind, ns.inputs, ns.out, video_root=ns.video_root, video_ext=ns.video_ext,
            require_videos=ns.require_videos, limit=ns.limit, seed=ns.seed,
        )
        print(json.dumps({"kind": ns.kind, "rows": n, "out": ns.out}))
        return n

    return run_cli(run)


if __name__ == "__main__":  # pragma: no cover
    main()
