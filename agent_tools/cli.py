"""The ``videoseek`` command line (typer + rich).

Commands:

- ``videoseek encoders`` - the encoder registry: name, model, trained?, weights available here?
- ``videoseek info VIDEO`` - duration, fps, frame count, size, codec.
- ``videoseek seek VIDEO --query ... [--image F] [--start S] [--end E] [--frames K] [--encoder NAME]
  [--json] [--sheet out.png]`` - temporal search; a progress bar shows while a new video is embedded.
- ``videoseek index`` / ``videoseek search`` - the corpus index (``agent_tools.corpus.cli``).
- ``videoseek ask`` - run a search policy over a video (``agent_tools.agent_cli``).

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
from rich.console import Console
from rich.table import Table

from .config import get_settings
from .errors import VideoseekError

__all__ = ["app", "main", "progress_bar", "settings_from_flags"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Long-video search for LLM agents.")
console = Console(stderr=True)
out = Console()


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


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    raise typer.Exit(code=2)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log to stderr.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)


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
        out.print_json(vi.model_dump_json())
        return
    table = Table(show_header=False, title=str(video))
    for k, v in vi.model_dump().items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
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
    settings = settings_from_flags(encoder=encoder, cache_dir=cache_dir, device=device)
    try:
        enc = load_encoder(settings.encoder, device=settings.device)
        searcher = TemporalSearcher(enc, settings=settings)
        needs_embedding = not searcher.store.has(video)
        with progress_bar(f"embedding {Path(video).name} at {settings.sample_fps:g} fps", enabled=needs_embedding) as cb:
            sel = searcher.seek(video, image if image else query, start, end, frames, with_images=bool(sheet), progress=cb)
    except VideoseekError as exc:
        _fail(exc)
    if sheet:
        from .render import contact_sheet

        title = f"{Path(video).name} | {sel.query or 'uniform'} | {sel.encoder}" + ("" if sel.encoder_trained else " (UNTRAINED)")
        img = contact_sheet(sel.images, sel.timestamps, title=title, captions=[f"{h.score:.3f}" if h.score is not None else "" for h in sel.frames])
        sheet.parent.mkdir(parents=True, exist_ok=True)
        img.save(sheet)
        console.print(f"contact sheet: {sheet}")
    if json_out:
        out.print_json(sel.model_dump_json())
        return
    if not sel.encoder_trained:
        console.print(f"[yellow]warning:[/] encoder {sel.encoder!r} is untrained; scores are not semantic")
    table = Table(title=f"{sel.method} | window {sel.start_time:.1f}-{sel.end_time:.1f}s | {sel.num_candidates} candidates")
    table.add_column("timestamp (s)", justify="right")
    table.add_column("score", justify="right")
    table.add_column("relevance", justify="right")
    for h in sel.frames:
        table.add_row(f"{h.timestamp:.2f}", "-" if h.score is None else f"{h.score:.4f}", "-" if h.relevance is None else f"{h.relevance:.3f}")
    out.print(table)


def _register_optional() -> None:
    """Attach the corpus and agent commands (their modules own them)."""
    import importlib

    for mod in ("agent_tools.corpus.cli", "agent_tools.agent_cli"):
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
    app()


if __name__ == "__main__":
    main()
