"""Run methods over a benchmark: resumable, with progress, writing the report.

:func:`run_eval` reads the annotation file, embeds each video once (the frame-embedding store
caches across runs), builds a corpus index when there are grounding items and the
``retrieval`` method runs, then for every method and item appends one :class:`Prediction` line
to ``<out>/predictions.jsonl``. A rerun skips the (method, item) pairs already there, so an
interrupted run resumes. Finally the metrics of all the file's items are computed and written
(:mod:`agent_tools.evaluation.report`).

- :func:`run_eval` - the Python API behind ``videoseek eval``.
- :func:`read_predictions` - the JSONL back as :class:`Prediction` objects.
- :data:`DEFAULT_METHODS` - ``uniform``, ``topk``, ``dpp``, ``retrieval``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..errors import InvalidArgumentError, VideoseekError
from .baselines import EvalContext, Method, PolicyMethod, make_methods
from .items import EvalItem, Prediction
from .readers import read_benchmark
from .report import compute_metrics, write_report

__all__ = ["run_eval", "read_predictions", "DEFAULT_METHODS", "EvalResult"]

log = logging.getLogger(__name__)

DEFAULT_METHODS = ("uniform", "topk", "dpp", "retrieval")


class EvalResult(dict):
    """``{"metrics", "files", "items", "skipped", "missing_videos"}`` (a dict, JSON-ready except paths)."""


def read_predictions(path: str | Path) -> list[Prediction]:
    """Predictions from a ``predictions.jsonl`` (a torn last line from a crash is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(Prediction.model_validate_json(line))
        except ValueError:
            log.warning("ignoring an unreadable line in %s", path)
    return out


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def _build_corpus(ctx: EvalContext, items: list[EvalItem], out_dir: Path) -> None:
    from ..corpus.builder import CorpusIndex

    paths = sorted({str(it.video_path.resolve()) for it in items if it.task == "grounding" and it.video_path})
    index = CorpusIndex.open(out_dir / "index", encoder=ctx.encoder, store=ctx.store)
    index.update(paths)
    ctx._corpus = index
    ctx._corpus_paths = {str(Path(it.video_path).resolve()): it.video_id for it in items if it.video_path}


def run_eval(
    annotation: str | Path,
    video_dir: str | Path,
    out_dir: str | Path,
    *,
    fmt: Optional[str] = None,
    encoder: Any = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    policy: Any = None,
    policy_model: Optional[str] = None,
    policy_label: Optional[str] = None,
    max_turns: Optional[int] = None,
    observation: Optional[str] = None,
    vocabulary: Optional[Sequence[str]] = None,
    tag_top_k: Optional[int] = None,
    k: int = 8,
    cache_dir: Optional[str | Path] = None,
    device: Optional[str] = None,
    limit: Optional[int] = None,
    threshold: float = 5.0,
    progress: bool = True,
    extra_methods: Sequence[Callable[[EvalContext], Method]] = (),
    title: Optional[str] = None,
) -> EvalResult:
    """Run baselines (and a policy) over a benchmark and write the report.

    Args:
        annotation: The benchmark's annotation file.
        video_dir: Folder with its videos.
        out_dir: Output folder: ``predictions.jsonl``, ``metrics.json``, ``report.md``, ``*.png``,
            and ``index/`` (the corpus index for grounding items).
        fmt: Annotation format (see :data:`agent_tools.evaluation.readers.FORMATS`); detected when None.
        encoder: An encoder object or registry name (default: the settings' encoder).
        methods: Baselines to run (``uniform``, ``topk``, ``dpp``, ``dpp-legacy``, ``retrieval``);
            each runs on the tasks it supports.
        policy: A :class:`~agent_tools.policies.Policy`, or anything
            :func:`~agent_tools.policies.load_policy` accepts (checkpoint dir, ``http(s)://`` URL of
            an OpenAI-compatible server such as vLLM); runs through the temporal graph on QA items.
        policy_model: Served model name for URL policies.
        policy_label: Name of the policy's rows (default ``policy``).
        max_turns: The policy's turn budget (default: its manifest's, else 8).
        observation: How frames reach the policy: ``"images"`` or ``"text"`` (timestamps,
            scores and zero-shot tags, for text-only models; a URL policy is then loaded
            ``text_only``). Default: as the policy's manifest says.
        vocabulary: Text observations: the zero-shot tag vocabulary (default: the manifest's
            ``tag_vocabulary``; none: timestamps and scores only).
        tag_top_k: Tags per frame with ``vocabulary`` (default: the manifest's, else 1).
        k: Frames per baseline selection (also the graph's frame cap applies to ``dpp``).
        cache_dir: Frame-embedding cache (default: the settings').
        device: Encoder / policy device.
        limit: Use only the first ``limit`` items.
        threshold: LV-Haystack temporal threshold in seconds.
        progress: Show rich progress bars.
        extra_methods: Further method factories ``ctx -> Method`` (plug in your own).
        title: Report title.

    Returns:
        An :class:`EvalResult` with the metrics and the paths written.

    Raises:
        InvalidArgumentError: Bad file, format, method name, or no item whose video exists.
    """
    from ..config import get_settings
    from ..encoders import load_encoder
    from ..temporal import TemporalSearcher

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = read_benchmark(annotation, video_dir, fmt)
    if limit:
        items = items[: int(limit)]
    missing = [it for it in items if it.video_path is None]
    items = [it for it in items if it.video_path is not None]
    if not items:
        raise InvalidArgumentError(
            f"none of the {len(missing)} items' videos is in {str(video_dir)!r} (first: {missing[0].video_id!r}); "
            "pass the folder that holds the benchmark's video files"
        )
    settings = get_settings(cache_dir=cache_dir, device=device, **({"encoder": encoder} if isinstance(encoder, str) else {}))
    enc = encoder if encoder is not None and not isinstance(encoder, str) else load_encoder(settings.encoder, device=settings.device)
    searcher = TemporalSearcher(enc, settings=settings)
    ctx = EvalContext(encoder=enc, searcher=searcher, k=k, work_dir=out)
    active = make_methods(ctx, list(methods)) + [f(ctx) for f in extra_methods]
    if policy is not None:
        if isinstance(policy, (str, Path)):
            from ..policies import load_policy

            extra = {"text_only": True} if observation == "text" else {}
            policy = load_policy(str(policy), model=policy_model, device=device or "auto", **extra)
        tagger = None
        if vocabulary is not None:
            from ..observations import EncoderTagger

            manifest = getattr(policy, "manifest", None)
            top_k = tag_top_k or (manifest.tag_top_k if manifest is not None else 1)
            tagger = EncoderTagger(searcher, list(vocabulary), top_k=top_k)
        active.append(
            PolicyMethod(ctx, policy, max_turns=max_turns, label=policy_label, observation=observation, tagger=tagger)
        )
    if not active:
        raise InvalidArgumentError("no method to run; name baselines with methods= or pass a policy")

    pred_path = out / "predictions.jsonl"
    done = {(p.method, p.item_id) for p in read_predictions(pred_path)}
    videos = sorted({it.video_path for it in items}, key=str)
    t0 = time.perf_counter()
    with _progress(progress) as bar:
        task = bar.add_task("embedding videos", total=len(videos))
        for v in videos:
            entry = searcher.embeddings(v)
            bar.advance(task)
            for it in items:
                if it.video_path == v and it.task == "haystack" and it.gt_frame_index is not None:
                    it.gt_times = [i / entry.info.fps for i in it.gt_frame_index]
        if any(it.task == "grounding" for it in items) and any(m.name == "retrieval" for m in active):
            _build_corpus(ctx, items, out)
        todo = [(m, it) for m in active for it in items if it.task in m.tasks and (m.name, it.item_id) not in done]
        task = bar.add_task("predicting", total=len(todo))
        with pred_path.open("a", encoding="utf-8") as f:
            for m, it in todo:
                bar.update(task, description=f"{m.name:>10}: {it.item_id}")
                try:
                    pred = m.predict(it)
                except VideoseekError as exc:
                    pred = Prediction(item_id=it.item_id, method=m.name, task=it.task, video_id=it.video_id,
                                      error=f"{type(exc).__name__}: {exc}", correct=False if it.task != "grounding" else None)
                f.write(pred.model_dump_json() + "\n")
                f.flush()
                bar.advance(task)
    if ctx._corpus is not None:
        ctx._corpus.close()
    names = {m.name for m in active}
    preds = [p for p in read_predictions(pred_path) if p.method in names]
    metrics = compute_metrics(items, preds, threshold=threshold)
    meta = {
        "annotation": str(annotation), "video_dir": str(video_dir), "format": items[0].source,
        "encoder": enc.name, "encoder_trained": bool(getattr(enc, "trained", True)), "k": k,
        "sample_fps": searcher.store.sample_fps if hasattr(searcher.store, "sample_fps") else None,
        "items": len(items), "missing_videos": len(missing), "methods": sorted(names),
        "resumed_predictions": len(done), "seconds": round(time.perf_counter() - t0, 2),
    }
    files = write_report(metrics, out, meta, title=title or f"videoseek eval: {Path(annotation).name}")
    return EvalResult(metrics=metrics, files=files, items=len(items), skipped=len(done), missing_videos=len(missing), run=meta)
