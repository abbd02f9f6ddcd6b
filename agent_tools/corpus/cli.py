"""``videoseek index`` and ``videoseek search``: the corpus commands, added to a Typer app.

- ``videoseek index PATH... [--index DIR] [--kind auto|flat|ivf|hnsw] [--encoder NAME]`` - build
  or update the corpus index (new, changed and removed files only); a progress bar per video
  and one overall. Without PATH, re-scans the folders indexed before. Ctrl-C stops cleanly;
  the same command resumes.
- ``videoseek index PATH... --engine ray [--address ADDR] [--workers N]`` - embed on Ray Data
  (a local instance, or a cluster unchanged), then index from the warm frame store here.
- ``videoseek index PATH... --backend milvus [--milvus-uri URI]`` - keep a new index's vectors in
  Milvus (Milvus Lite file by default); later commands use the index's own backend.
- ``videoseek index --status [--json]`` - counts, vectors, index kind, failed files and why.
- ``videoseek search "QUERY" [--image F] [--top K] [--video ID] [--json]`` - ranked moments
  (video, start, end, score) across the corpus; ``--refiner DIR`` (an SQR checkpoint trained
  for the index's encoder) verifies the top moment with its policy and re-searches with the
  soft-refined query when it does not match.

The index directory defaults to ``Settings.index_dir`` (``$XDG_DATA_HOME/videoseek/index``;
``VIDEOSEEK_INDEX_DIR`` overrides). Searching uses the encoder the index was built with.

Usage (in ``agent_tools/cli.py``)::

    from agent_tools.corpus.cli import register
    register(app)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from agent_tools.display import json_safe, shown
from rich.table import Table

from agent_tools._term import make_console, warn_once
from agent_tools.errors import VideoseekError

__all__ = ["register", "index_command", "search_command"]

_err = make_console(stderr=True)
_out = make_console()  # plain and never cut at 80 columns when piped


def _fail(exc: Exception) -> None:
    _err.print(f"[bold red]error:[/] {shown(exc)}", highlight=False)
    raise typer.Exit(code=2)


def _settings(**flags):
    from agent_tools.config import get_settings

    return get_settings(**{k: v for k, v in flags.items() if v is not None})


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_status(st, json_out: bool) -> None:
    if json_out:
        _out.print_json(st.model_dump_json())
        return
    table = Table(show_header=False, title=shown(f"corpus index {st.index_dir}"))
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("encoder", f"{st.encoder or '-'} ({st.dim or '-'}-d, {st.sample_fps or '-'} frames/s)")
    table.add_row("videos", f"{st.num_indexed} indexed, {st.num_failed} failed, {st.num_pending} pending")
    table.add_row("video time", f"{st.total_duration / 3600:.2f} h")
    param = (
        ""
        if st.search_param is None
        else f", {'nprobe' if st.main_kind == 'ivf' else 'efSearch'}={st.search_param}"
    )
    table.add_row(
        "vectors",
        f"{st.num_vectors} ({st.num_vectors_main} in {st.main_kind or 'no'} main index"
        f"{param}, {st.num_vectors_delta} in delta)",
    )
    table.add_row("kind", st.kind)
    table.add_row("disk", _fmt_bytes(st.disk_bytes))
    _out.print(table)
    if st.failed:
        ft = Table(title="failed files")
        ft.add_column("path", overflow="fold")
        ft.add_column("reason", overflow="fold")
        for r in st.failed:
            ft.add_row(shown(r.path), shown(r.error or ""))
        _out.print(ft)


def index_command(
    paths: Optional[list[Path]] = typer.Argument(
        None, help="Video files or folders (recursive). Default: the folders indexed before."
    ),
    index: Optional[Path] = typer.Option(
        None, "--index", help="Index directory (default: per-user data dir)."
    ),
    status: bool = typer.Option(False, "--status", help="Summarise the index and exit."),
    kind: Optional[str] = typer.Option(
        None, "--kind", help="Vector index: auto (default), flat, ivf or hnsw."
    ),
    encoder: Optional[str] = typer.Option(
        None, "--encoder", help="Encoder (default: the index's, else the setting)."
    ),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Frame-embedding cache directory."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
    json_out: bool = typer.Option(False, "--json", help="Print the BuildReport / IndexStatus as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    speech: Optional[bool] = typer.Option(
        None, "--speech/--no-speech", help="Also index what is said (default: on when the ASR model is installed)."
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local (this process) or ray (embed on a Ray cluster, then index here)."
    ),
    address: Optional[str] = typer.Option(
        None, "--address", help="--engine ray: cluster address (auto, ray://host:10001); default a local Ray."
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="--engine ray: encoder actors."),
    backend: Optional[str] = typer.Option(
        None, "--backend", help="Vector backend of a new index: faiss (default) or milvus."
    ),
    milvus_uri: Optional[str] = typer.Option(
        None, "--milvus-uri", help="--backend milvus: Milvus Lite *.db file or http://host:19530."
    ),
) -> None:
    """Build or update the corpus index from video files and folders (incremental, resumable)."""
    from agent_tools.corpus.builder import CorpusIndex

    settings = _settings(index_dir=index, cache_dir=cache_dir, device=device, encoder=encoder)
    try:
        if status:
            with CorpusIndex.open(settings.index_dir, None, read_only=True) as idx:
                _print_status(idx.status(), json_out)
            return
        meta = CorpusIndex.read_meta(settings.index_dir)
        stored = meta.get("encoder")
        roots = meta.get("roots") or []
        fps = meta.get("sample_fps") or settings.sample_fps
        enc_name = encoder or stored or settings.encoder
        from agent_tools.encoders import load_encoder
        from agent_tools.store import FrameEmbeddingStore

        enc = load_encoder(enc_name, device=settings.device)
        targets = [str(p) for p in paths] if paths else roots
        if not targets:
            raise VideoseekError("give the video files or folders to index: videoseek index PATH...")
        store = FrameEmbeddingStore(settings.cache_dir, enc, sample_fps=fps, batch_size=settings.batch_size)
        if engine not in ("local", "ray"):
            raise VideoseekError(f"--engine {engine!r} is not one of local, ray")
        idx = CorpusIndex.open(
            settings.index_dir, enc, store=store, kind=kind, sample_fps=fps, backend=backend, milvus_uri=milvus_uri
        )
    except VideoseekError as exc:
        _fail(exc)
    if not enc.trained:
        warn_once(_err, "untrained", f"[yellow]warning:[/] encoder {enc.name!r} is untrained; search scores will not be semantic")
    try:
        if engine == "ray":
            from agent_tools.corpus.ray_engine import ray_update

            def on_ray(ev) -> None:
                if progress and not json_out:
                    eta = "-" if ev.eta_s is None else f"{ev.eta_s:.0f}s"
                    _err.print(
                        f"ray: {ev.done}/{ev.total} videos, {ev.videos_per_s:.2f} videos/s, ETA {eta}: "
                        f"{escape(Path(ev.path).name)} {escape(ev.status.split(':')[0])}",
                        highlight=False,
                    )

            report = ray_update(
                idx, targets, enc.name, settings.cache_dir, address=address, workers=workers,
                batch_size=settings.batch_size, device=settings.device, progress=on_ray,
            )
        else:
            report = _run_update(idx, targets, progress and not json_out)
        if not report.interrupted:
            from agent_tools.speech.cli import speech_enabled, speech_pass

            run_speech, why_not = speech_enabled(settings, speech)
            if run_speech:
                report.speech = speech_pass(
                    settings.index_dir, idx.list_videos(status="indexed"), settings, progress and not json_out,
                    path_of=idx.video_path,
                )
            elif why_not and not json_out:
                _err.print(f"[yellow]note:[/] {escape(why_not)}", highlight=False)
    except VideoseekError as exc:
        _fail(exc)
    finally:
        idx.close()
    if json_out:
        _out.print_json(report.model_dump_json())
    else:
        _out.print(
            f"indexed {len(report.added)} new, {len(report.changed)} changed; removed {len(report.removed)}; "
            f"{report.unchanged} unchanged; {len(report.failed)} failed; {report.num_vectors} vectors "
            f"({report.main_kind or 'empty'}) in {report.seconds:.1f}s"
        )
        if report.speech is not None:
            sp = report.speech
            _out.print(
                f"speech: {len(sp.transcribed)} transcribed ({sp.seconds_audio:.0f} s of audio, "
                f"{sp.num_passages} sentences), {len(sp.without_audio)} without audio, {sp.unchanged} unchanged, "
                f"{len(sp.failed)} failed in {sp.seconds:.1f}s"
            )
        if not (progress and not json_out):  # with progress bars each failure was printed as it happened
            for path, reason in report.failed.items():
                _err.print(f"[red]failed:[/] {shown(path)}: {shown(reason)}", highlight=False)
    if report.interrupted:
        _err.print("[yellow]interrupted[/]: completed videos are saved; run the same command again to resume")
        raise typer.Exit(code=130)
    from agent_tools.corpus.builder import MISSING_REASON

    missing = [p for p, reason in report.failed.items() if reason == MISSING_REASON]
    if missing:  # a named path that does not exist (and was not an indexed file to drop)
        _err.print(
            f"[bold red]error:[/] no such file or folder: {shown(', '.join(missing))}; "
            "pass existing video files or folders",
            highlight=False,
        )
        raise typer.Exit(code=1)


def _run_update(idx, targets: list[str], show: bool):
    if not show:
        return idx.update(targets)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_err,
        transient=False,
    ) as bar:
        overall = bar.add_task("videos", total=None)
        current = bar.add_task("scanning", total=None)

        def on_event(ev) -> None:
            if ev.stage == "scan":
                bar.update(overall, total=ev.total, completed=0)
                bar.update(current, description="-", total=1, completed=0)
            elif ev.stage == "start":
                bar.update(current, description=shown(Path(ev.path).name[:40]), total=None, completed=0)
            elif ev.stage == "frames":
                bar.update(current, total=ev.total_frames, completed=ev.done_frames)
            elif ev.stage in ("done", "failed"):
                bar.advance(overall)
                if ev.stage == "failed":
                    bar.console.print(f"[red]failed[/] {shown(ev.path)}: {shown(ev.message)}", highlight=False)
            elif ev.stage == "removed":
                bar.console.print(f"removed {shown(ev.path)}", highlight=False)
            elif ev.stage == "finalize":
                bar.update(current, visible=False)
                bar.update(overall, description="saving the vector index")

        return idx.update(targets, progress=on_event)


def search_command(
    query: Optional[str] = typer.Argument(None, help="What to look for (text)."),
    image: Optional[Path] = typer.Option(
        None, "--image", help="Search with an example image instead of text."
    ),
    top: int = typer.Option(5, "--top", "-k", help="Moments to return (1-100)."),
    video: Optional[str] = typer.Option(
        None, "--video", help="Only localise inside this video (id or path)."
    ),
    index: Optional[Path] = typer.Option(
        None, "--index", help="Index directory (default: per-user data dir)."
    ),
    encoder: Optional[str] = typer.Option(
        None, "--encoder", help="Encoder (default: the one the index was built with)."
    ),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
    json_out: bool = typer.Option(False, "--json", help="Print the MomentSearchResult as JSON."),
    source: str = typer.Option(
        "all", "--source", help="all (frames and speech, one ranking), visual, or speech."
    ),
    refiner: Optional[Path] = typer.Option(
        None,
        "--refiner",
        help="SQR checkpoint (python -m training.sqr, trained for this index's encoder): its policy "
        "verifies the top moment and, if it does not match, the frames are searched again with the "
        "soft-refined query.",
    ),
) -> None:
    """Find the moments across the indexed videos that match a text or image query."""
    from agent_tools.corpus.builder import CorpusIndex
    from agent_tools.corpus.moments import MomentSearcher

    settings = _settings(index_dir=index, device=device)
    try:
        if bool(query) == bool(image):
            raise VideoseekError("give a text QUERY or --image FILE (exactly one)")
        if query and len(query) > settings.max_query_chars:
            raise VideoseekError(
                f"the query is {len(query)} characters long; the limit is {settings.max_query_chars} "
                "(VIDEOSEEK_MAX_QUERY_CHARS); describe the moment in a sentence or two"
            )
        if image is not None and image.exists() and not image.is_file():
            raise VideoseekError(
                f"--image {image} is not a regular file (a folder, device or FIFO); pass a JPEG or PNG file"
            )
        enc_name = encoder or CorpusIndex.read_meta(settings.index_dir).get("encoder")
        if enc_name is None:
            raise VideoseekError(
                f"the index {settings.index_dir} is empty; run `videoseek index PATH...` first"
            )
        from agent_tools.encoders import load_encoder

        if source not in ("all", "visual", "speech"):
            raise VideoseekError(f"--source {source!r} is not one of all, visual, speech")
        if source == "speech" and image:
            raise VideoseekError("--source speech needs a text QUERY, not --image")
        enc = load_encoder(enc_name, device=settings.device)
        if refiner is not None and (image is not None or source == "speech"):
            raise VideoseekError("--refiner refines a text QUERY over the frames; drop --image / --source speech")
        with CorpusIndex.open(settings.index_dir, enc, read_only=True) as idx:
            vids = [idx.get_video(video).video_id] if video else None
            result = None
            if refiner is not None:  # soft query refinement (VideoSearch-R1); another encoder is refused
                result = _refined_search(refiner, MomentSearcher(idx, enc), enc, settings, query, top, video, json_out)
            elif source != "speech":
                pool = top if image or source == "visual" else max(20, 2 * top)  # fusion wants candidates
                result = MomentSearcher(idx, enc).search(Path(image) if image else query, top_k=pool, video=video)
            if query and source != "visual" and refiner is None:
                result = _with_speech(result, idx, enc, settings, query, top, vids, source)
    except VideoseekError as exc:
        _fail(exc)
    if json_out:
        _out.print_json(data=json_safe(result.model_dump(mode="json")))
        return
    if not result.encoder_trained:
        warn_once(_err, "untrained", f"[yellow]warning:[/] encoder {result.encoder!r} is untrained; scores are not semantic")
    table = Table(
        title=f"{len(result.moments)} moments | {result.num_videos_searched} videos | {result.encoder}"
    )
    for col, just in (
        ("#", "right"),
        ("video", "left"),
        ("path", "left"),
        ("start", "right"),
        ("end", "right"),
        ("score", "right"),
        ("source", "left"),
        ("said", "left"),
    ):
        table.add_column(col, justify=just, overflow="fold")
    for i, m in enumerate(result.moments, 1):
        table.add_row(
            str(i), m.video_id, shown(m.path), f"{m.start:.2f}", f"{m.end:.2f}", f"{m.score:.4f}",
            m.source, escape(m.text or ""),
        )
    _out.print(table)


def _refined_search(refiner: Path, searcher, enc, settings, query: str, top: int, video, quiet: bool):
    """``--refiner``: verify the top moment with the SQR checkpoint's policy, re-search if rejected."""
    from agent_tools.policies.soft_refine import load_refiner, refine_search

    sqr = load_refiner(refiner, enc, device=settings.device)
    result, verified = refine_search(searcher, sqr, query, top_k=top, video=video)
    if not quiet:
        m = verified["moment"]
        verdict = {True: "matched", False: "not matched", None: "no usable verdict"}[verified["matched"]]
        tail = "" if verified["matched"] else "; showing the refined query's moments"
        _err.print(f"refiner: top moment {m['video_id']} {m['start']:.2f}-{m['end']:.2f} {verdict}{tail}", highlight=False)
    return result


def _with_speech(result, idx, enc, settings, query: str, top: int, vids, source: str):
    """Fuse the speech index's hits into ``result`` (or make a speech-only result)."""
    from agent_tools.speech.cli import speech_moments
    from agent_tools.speech.corpus import fuse_moments
    from agent_tools.types import MomentSearchResult

    said = speech_moments(settings.index_dir, settings, query, top_k=max(20, 2 * top), video_ids=vids)
    if source == "speech":
        return MomentSearchResult(
            query=query, encoder=settings.text_encoder, encoder_trained=True, moments=said[:top],
            num_videos_searched=len({m.video_id for m in said}),
        )
    if not said:
        return result.model_copy(update={"moments": result.moments[:top]})
    return result.model_copy(update={"moments": fuse_moments(result.moments, said, top_k=top)})


def register(app: typer.Typer) -> None:
    """Add the ``index`` and ``search`` commands to ``app``."""
    app.command("index")(index_command)
    app.command("search")(search_command)
