"""``videoseek index`` and ``videoseek search``: the corpus commands, added to a Typer app.

- ``videoseek index PATH... [--index DIR] [--kind auto|flat|ivf|hnsw] [--encoder NAME]`` - build
  or update the corpus index (new, changed and removed files only); a progress bar per video
  and one overall. Without PATH, re-scans the folders indexed before. Ctrl-C stops cleanly;
  the same command resumes.
- ``videoseek index --status [--json]`` - counts, vectors, index kind, failed files and why.
- ``videoseek search "QUERY" [--image F] [--top K] [--video ID] [--json]`` - ranked moments
  (video, start, end, score) across the corpus.

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
from rich.console import Console
from rich.table import Table

from agent_tools.errors import VideoseekError

__all__ = ["register", "index_command", "search_command"]

_err = Console(stderr=True)
_out = Console()


def _fail(exc: Exception) -> None:
    _err.print(f"[bold red]error:[/] {exc}", highlight=False)
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
    table = Table(show_header=False, title=f"corpus index {st.index_dir}")
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
            ft.add_row(r.path, r.error or "")
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
        idx = CorpusIndex.open(settings.index_dir, enc, store=store, kind=kind, sample_fps=fps)
    except VideoseekError as exc:
        _fail(exc)
    if not enc.trained:
        _err.print(
            f"[yellow]warning:[/] encoder {enc.name!r} is untrained; search scores will not be semantic"
        )
    try:
        report = _run_update(idx, targets, progress and not json_out)
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
        for path, reason in report.failed.items():
            _err.print(f"[red]failed:[/] {path}: {reason}", highlight=False)
    if report.interrupted:
        _err.print("[yellow]interrupted[/]: completed videos are saved; run the same command again to resume")
        raise typer.Exit(code=130)


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
                bar.update(current, description=Path(ev.path).name[:40], total=None, completed=0)
            elif ev.stage == "frames":
                bar.update(current, total=ev.total_frames, completed=ev.done_frames)
            elif ev.stage in ("done", "failed"):
                bar.advance(overall)
                if ev.stage == "failed":
                    bar.console.print(f"[red]failed[/] {ev.path}: {ev.message}", highlight=False)
            elif ev.stage == "removed":
                bar.console.print(f"removed {ev.path}", highlight=False)
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
) -> None:
    """Find the moments across the indexed videos that match a text or image query."""
    from agent_tools.corpus.builder import CorpusIndex
    from agent_tools.corpus.moments import MomentSearcher

    settings = _settings(index_dir=index, device=device)
    try:
        if bool(query) == bool(image):
            raise VideoseekError("give a text QUERY or --image FILE (exactly one)")
        enc_name = encoder or CorpusIndex.read_meta(settings.index_dir).get("encoder")
        if enc_name is None:
            raise VideoseekError(
                f"the index {settings.index_dir} is empty; run `videoseek index PATH...` first"
            )
        from agent_tools.encoders import load_encoder

        enc = load_encoder(enc_name, device=settings.device)
        with CorpusIndex.open(settings.index_dir, enc, read_only=True) as idx:
            result = MomentSearcher(idx, enc).search(Path(image) if image else query, top_k=top, video=video)
    except VideoseekError as exc:
        _fail(exc)
    if json_out:
        _out.print_json(result.model_dump_json())
        return
    if not result.encoder_trained:
        _err.print(f"[yellow]warning:[/] encoder {result.encoder!r} is untrained; scores are not semantic")
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
    ):
        table.add_column(col, justify=just, overflow="fold")
    for i, m in enumerate(result.moments, 1):
        table.add_row(str(i), m.video_id, m.path, f"{m.start:.2f}", f"{m.end:.2f}", f"{m.score:.4f}")
    _out.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``index`` and ``search`` commands to ``app``."""
    app.command("index")(index_command)
    app.command("search")(search_command)
