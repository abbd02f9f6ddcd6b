"""The ``videoseek`` command line (typer + rich).

Commands:

- ``videoseek encoders`` - the encoder registry: name, model, trained?, weights available here?
- ``videoseek info VIDEO`` - duration, fps, frame count, size, codec.
- ``videoseek seek VIDEO --query ... [--image F] [--start S] [--end E] [--frames K] [--encoder NAME]
  [--json] [--sheet out.png]`` - temporal search; a progress bar shows while a new video is embedded.
- ``videoseek index`` / ``videoseek search`` - the corpus index (``agent_tools.corpus.cli``).
- ``videoseek ask`` - run a search policy over a video (``agent_tools.agent_cli``).
- ``videoseek list [--status S] [--json]`` - the corpus index's videos: id, status, duration, path.
- ``videoseek sample [DIR]`` - write the README's example media (talk.mp4, slide.png, still.png).

Settings (encoder, cache directory, device, ...) also come from ``VIDEOSEEK_*`` environment
variables; flags win over the environment. ``--json`` prints the same pydantic model the
library, the MCP server and the LangChain tools return.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ._term import make_console, quiet_native_logs, reset_warnings, silence_native_stderr, warn_once
from .config import get_settings
from .display import json_safe, shown
from .errors import VideoseekError

__all__ = ["app", "main", "progress_bar", "settings_from_flags", "list_command", "sample"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Long-video search for LLM agents.")
console = make_console(stderr=True)
out = make_console()  # plain and never cut at 80 columns when piped


def settings_from_flags(**flags):
    """Settings from the environment with non-None CLI flags on top."""
    return get_settings(**flags)


@contextmanager
def progress_bar(description: str, enabled: bool = True):
    """A rich progress bar on stderr; yields a ``progress(done, total)`` callback."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


_SHEET_MAX_SIDE = 640
"""Longest side of the frames decoded for ``seek --sheet`` (tiles are 320 px wide)."""


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {shown(exc)}", highlight=False, markup=True)
    raise typer.Exit(code=2)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log to stderr.")) -> None:
    # Without -v the commands report everything themselves, once; library log lines would repeat it.
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, stream=sys.stderr)
    reset_warnings()
    try:
        get_settings()  # an invalid VIDEOSEEK_* value: one line naming the variable, before any work
    except VideoseekError as exc:
        _fail(exc)


@app.command()
def encoders(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the registered encoders and whether their weights are on this machine."""
    from .encoders import list_encoders, weights_status

    settings = get_settings()
    rows = []
    for spec in list_encoders():
        ok, detail = weights_status(spec)
        rows.append(
            {
                "name": spec.name,
                "model": spec.model or "inline config",
                "pretrained": spec.pretrained,
                "trained": spec.trained,
                "weights_available": ok,
                "detail": detail,
                "default": spec.name == settings.encoder,
                "description": spec.description,
            }
        )
    if json_out:
        import json

        out.print_json(json.dumps(rows))
        return
    table = Table(title="videoseek encoders")
    for col in ("name", "model", "trained", "weights here", "notes"):
        table.add_column(col)
    for r in rows:
        name = r["name"] + (" (default)" if r["default"] else "")
        trained = "yes" if r["trained"] else "[red]NO (random weights)[/]"
        avail = "[green]yes[/]" if r["weights_available"] else "[yellow]no[/]"
        table.add_row(name, f"{r['model']} / {r['pretrained'] or '-'}", trained, avail, r["detail"])
    out.print(table)


@app.command()
def info(video: Path = typer.Argument(..., help="Video file."), json_out: bool = typer.Option(False, "--json")) -> None:
    """Show a video's duration, frame rate, frame count and size."""
    from .video import probe

    try:
        vi = probe(video, backend=get_settings().video_backend)
    except VideoseekError as exc:
        _fail(exc)
    if json_out:
        out.print_json(data=json_safe(vi.model_dump(mode="json")))  # a non-UTF-8 file name prints as \xNN
        return
    table = Table(show_header=False, title=shown(video))
    for k, v in vi.model_dump().items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else shown(v))
    out.print(table)


@app.command()
def seek(
    video: Path = typer.Argument(..., help="Video file."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="What to look for (text). Empty: uniform frames."),
    image: Optional[Path] = typer.Option(None, "--image", help="Search with an example image instead of text."),
    start: Optional[float] = typer.Option(None, "--start", help="Window start in seconds (default 0)."),
    end: Optional[float] = typer.Option(None, "--end", help="Window end in seconds (default: the end)."),
    frames: Optional[int] = typer.Option(None, "--frames", "-k", help="Frames to return (default 8)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder name (see `videoseek encoders`)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Frame-embedding cache directory."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
    json_out: bool = typer.Option(False, "--json", help="Print the result model as JSON."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write a contact sheet PNG of the chosen frames."),
) -> None:
    """Find the frames of VIDEO that match a query inside a time window."""
    from .encoders import load_encoder
    from .temporal import TemporalSearcher

    if query and image:
        _fail(VideoseekError("give either --query (text) or --image, not both"))
    if sheet is not None and sheet.is_dir():
        _fail(VideoseekError(f"--sheet {sheet} is a folder; pass a file name ending in .png or .jpg"))
    settings = settings_from_flags(encoder=encoder, cache_dir=cache_dir, device=device)
    try:
        enc = load_encoder(settings.encoder, device=settings.device)
        searcher = TemporalSearcher(enc, settings=settings)
        needs_embedding = not searcher.store.has(video)
        with progress_bar(shown(f"embedding {Path(video).name} at {settings.sample_fps:g} fps"), enabled=needs_embedding) as cb:
            # sheet frames are decoded at tile scale: an 8192x8192 clip never sits in memory at full size
            sel = searcher.seek(video, image if image else query, start, end, frames, with_images=bool(sheet), progress=cb, max_side=_SHEET_MAX_SIDE if sheet else None)
    except VideoseekError as exc:
        _fail(exc)
    if sheet:
        from .render import contact_sheet

        title = f"{Path(video).name} | {sel.query or 'uniform'} | {sel.encoder}" + ("" if sel.encoder_trained else " (UNTRAINED)")
        img = contact_sheet(sel.images, sel.timestamps, title=title, captions=[f"{h.score:.3f}" if h.score is not None else "" for h in sel.frames])
        try:
            sheet.parent.mkdir(parents=True, exist_ok=True)
            img.save(sheet)
        except (OSError, ValueError) as exc:  # a folder, no permission, unknown extension
            _fail(VideoseekError(f"cannot write the contact sheet to {sheet}: {exc}; pass a writable .png or .jpg path"))
        console.print(f"contact sheet: {shown(sheet)}", highlight=False)
    if json_out:
        out.print_json(data=json_safe(sel.model_dump(mode="json")))
        return
    if not sel.encoder_trained:
        warn_once(console, "untrained", f"[yellow]warning:[/] encoder {sel.encoder!r} is untrained; scores are not semantic")
    table = Table(title=f"{sel.method} | window {sel.start_time:.1f}-{sel.end_time:.1f}s | {sel.num_candidates} candidates")
    table.add_column("timestamp (s)", justify="right")
    table.add_column("score", justify="right")
    table.add_column("relevance", justify="right")
    for h in sel.frames:
        table.add_row(f"{h.timestamp:.2f}", "-" if h.score is None else f"{h.score:.4f}", "-" if h.relevance is None else f"{h.relevance:.3f}")
    out.print(table)


@app.command("list")
def list_command(
    index: Optional[Path] = typer.Option(None, "--index", help="Index directory (default: per-user data dir)."),
    status: Optional[str] = typer.Option(None, "--status", help="Only pending, indexed or failed videos."),
    json_out: bool = typer.Option(False, "--json", help="Print the VideoRecord list as JSON."),
) -> None:
    """List the videos of the corpus index: id, status, duration, path (and why a file failed)."""
    from .corpus.builder import CorpusIndex

    try:
        settings = settings_from_flags(index_dir=index)
        with CorpusIndex.open(settings.index_dir, None, read_only=True) as idx:
            rows = idx.list_videos(status)
    except VideoseekError as exc:
        _fail(exc)
    if json_out:
        out.print_json(data=json_safe([r.model_dump(mode="json") for r in rows]))
        return
    table = Table(title=shown(f"{len(rows)} videos in {settings.index_dir}"))
    for col, just in (("video id", "left"), ("status", "left"), ("duration (s)", "right"), ("path", "left"), ("error", "left")):
        table.add_column(col, justify=just, overflow="fold")
    for r in rows:
        dur = "-" if r.duration is None else f"{r.duration:.1f}"
        table.add_row(r.video_id, r.status, dur, shown(r.path), shown(r.error or ""))
    out.print(table)


SAMPLE_SCENE_SECONDS = 20.0
"""Seconds per "slide" of the sample talk (each scene has its own colours and pattern)."""


@app.command()
def sample(
    folder: Path = typer.Argument(Path("."), help="Folder to write talk.mp4, slide.png and still.png into."),
    seconds: float = typer.Option(240.0, "--seconds", min=20.0, max=3600.0, help="Length of talk.mp4."),
    silent: bool = typer.Option(False, "--silent", help="No speech track, even when espeak-ng is installed."),
) -> None:
    """Write the README's example media: talk.mp4, slide.png (a frame of it) and still.png.

    talk.mp4 is synthetic: a new "slide" (colours and pattern) every 20 s at 320x180, 5 fps, H.264,
    written with PyAV (no ffmpeg binary needed). slide.png is exactly the picture shown from 120 s
    to 140 s, still.png the one from 20 s to 40 s, so `seek --image` has a right answer. Where
    espeak-ng is installed, each slide also says one sentence 2 s after it appears (AAC audio;
    ``agent_tools.speech.synth.SAMPLE_TALK``), for `videoseek transcript` and speech search.
    """
    import numpy as np
    from PIL import Image

    from .synthetic import render_frame, write_indexed_video

    fps, (w, h), seed = 5.0, (320, 180), 3
    try:
        folder.mkdir(parents=True, exist_ok=True)
        from .speech.synth import SAMPLE_TALK, espeak_available, write_spoken_video

        said = [
            (i * SAMPLE_SCENE_SECONDS + 2.0, text)
            for i, text in enumerate(SAMPLE_TALK)
            if i * SAMPLE_SCENE_SECONDS + 14.0 <= seconds
        ]
        if said and not silent and espeak_available():
            talk = write_spoken_video(folder / "talk.mp4", seconds, said, fps=int(fps), size=(w, h),
                                      seed=seed, scene_seconds=SAMPLE_SCENE_SECONDS)
            voice = f", {len(said)} spoken sentences"
        else:
            talk = write_indexed_video(folder / "talk.mp4", duration=seconds, fps=fps, size=(w, h),
                                       scene_seconds=SAMPLE_SCENE_SECONDS, seed=seed)
            voice = ", no speech track (espeak-ng not installed)" if said and not silent else ""
        written = [f"{shown(talk)} ({seconds:g} s, a new slide every {SAMPLE_SCENE_SECONDS:g} s{voice})"]
        for name, t in (("slide.png", min(130.0, seconds * 0.55)), ("still.png", min(30.0, seconds * 0.15))):
            rgb = render_frame(int(round(t * fps)), t, w, h, SAMPLE_SCENE_SECONDS, seed)
            Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(folder / name)
            written.append(f"{shown(folder / name)} (the slide shown around {t:g} s)")
    except OSError as exc:
        _fail(VideoseekError(f"cannot write the sample media into {folder}: {exc}"))
    for line in written:
        out.print(line, highlight=False)


def _register_optional() -> None:
    """Attach the corpus and agent commands (their modules own them)."""
    import importlib

    commands = (
        "agent_tools.corpus.cli",
        "agent_tools.agent_cli",
        "agent_tools.speech.cli",
        "agent_tools.evaluation.cli",
    )
    for mod in commands:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and mod.startswith(exc.name):
                continue
            raise
        module.register(app)


_register_optional()


def main() -> None:
    """Console-script entry point."""
    quiet_native_logs()
    if not {"-v", "--verbose"} & set(sys.argv[1:]):
        silence_native_stderr()  # decoder libraries' own lines; -v keeps them
    app()


if __name__ == "__main__":
    main()
