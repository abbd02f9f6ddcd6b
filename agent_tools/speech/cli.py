"""Speech on the command line, and the speech hooks of ``videoseek index`` / ``videoseek search``.

Commands (registered by :func:`register`):

- ``videoseek transcript VIDEO [--format text|srt|vtt|json] [--start S] [--end E]`` - the timed
  transcript (subtitles when present, else ASR); ``--query Q`` instead finds where Q is said.

Hooks the corpus commands call:

- :func:`speech_pass` - after the visual build: transcribe and index new videos' speech.
- :func:`speech_moments` - the speech hits of a corpus query, for fusion with the visual ones.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import VideoseekError

__all__ = ["register", "transcript_command", "speech_pass", "speech_moments", "speech_enabled"]

_err = Console(stderr=True)


def speech_enabled(settings, flag: Optional[bool]) -> tuple[bool, Optional[str]]:
    """Whether the speech pass runs: the flag, else the setting when the ASR model is installed.

    Returns:
        ``(enabled, why_not)``.
    """
    from .models import asr_available

    wanted = settings.speech if flag is None else flag
    if not wanted:
        return False, None
    try:
        ok = asr_available(settings.asr_model)
    except VideoseekError as exc:
        return False, str(exc)
    if not ok:
        why = f"speech is not indexed: ASR model {settings.asr_model!r} is not installed (pip install 'videoseek[speech]')"
        if flag:  # asked for explicitly
            raise VideoseekError(why)
        return False, why
    return True, None


def speech_pass(index_dir: Path, records, settings, show: bool, path_of=None):
    """Bring the speech index beside ``index_dir`` up to date with the catalog's indexed videos.

    Returns:
        The :class:`~agent_tools.types.SpeechBuildReport`.
    """
    from .corpus import open_speech_index, update_speech
    from .models import LazyTextEncoder
    from .transcripts import TranscriptStore

    te = LazyTextEncoder(settings.text_encoder, device=settings.device)
    store = TranscriptStore(settings.cache_dir, settings.asr_model, device=settings.device)
    speech = open_speech_index(index_dir, te)
    try:
        if not show:
            return update_speech(records, speech, store, path_of=path_of)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), console=_err
        ) as bar:
            task = bar.add_task("speech", total=len(records))

            def on_event(kind: str, vid: str, detail: str) -> None:
                if kind == "start":
                    bar.update(task, description=f"speech {escape(Path(detail).name[:40])}")
                elif kind == "failed":
                    bar.advance(task)
                    bar.console.print(f"[red]speech failed[/] {escape(vid)}: {escape(detail)}", highlight=False)
                else:
                    bar.advance(task)

            report = update_speech(records, speech, store, on_event=on_event, path_of=path_of)
            bar.update(task, completed=len(records))
            return report
    finally:
        speech.close()


def speech_moments(index_dir: Path, settings, query: str, top_k: int, video_ids=None):
    """Speech moments of a corpus query, or ``[]`` when the index has no speech."""
    from .index import SPEECH_DB
    from .corpus import open_speech_index
    from .models import load_text_encoder

    if not (Path(index_dir) / SPEECH_DB).exists():
        return []
    te = load_text_encoder(settings.text_encoder, device=settings.device)
    speech = open_speech_index(index_dir, te, read_only=True)
    try:
        return speech.search(query, top_k=top_k, video_ids=video_ids)
    finally:
        speech.close()


def _fail(exc: Exception) -> None:
    _err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    raise typer.Exit(code=2)


def transcript_command(
    video: Path = typer.Argument(..., help="Video file."),
    fmt: str = typer.Option("text", "--format", "-f", help="text, srt, vtt or json."),
    start: Optional[float] = typer.Option(None, "--start", help="Only speech after this time (seconds)."),
    end: Optional[float] = typer.Option(None, "--end", help="Only speech before this time (seconds)."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="Find where this is said instead."),
    top: int = typer.Option(5, "--top", "-k", help="With --query: sentences to return."),
    asr_model: Optional[str] = typer.Option(None, "--asr-model", help="ASR model (default: the setting)."),
    no_subtitles: bool = typer.Option(False, "--no-subtitles", help="Ignore subtitle files/streams; run ASR."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache directory."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
) -> None:
    """Print what is said in a video, with times (subtitles when present, else speech recognition)."""
    from ..config import get_settings
    from .subtitles import to_srt, to_vtt
    from .transcripts import TranscriptStore

    if fmt not in ("text", "srt", "vtt", "json"):
        _fail(VideoseekError(f"--format {fmt!r} is not one of text, srt, vtt, json"))
    try:
        settings = get_settings(cache_dir=cache_dir, device=device, asr_model=asr_model)
        store = TranscriptStore(settings.cache_dir, settings.asr_model, use_subtitles=not no_subtitles,
                                device=settings.device)
        show = sys.stderr.isatty()
        transcript = store.get(video, progress=(lambda m: _err.print(escape(m))) if show else None)
        from .models import LazyTextEncoder
        from .searcher import SpeechSearcher

        speech = SpeechSearcher(store, LazyTextEncoder(settings.text_encoder, settings.device))
        segs = speech.transcript(video, start, end).segments
        if query is not None:
            hits = speech.search(video, query, top_k=top, start_time=start, end_time=end).moments
            if fmt == "json":
                print("[" + ",".join(h.model_dump_json() for h in hits) + "]")
            else:
                for h in hits:
                    print(f"{h.start:8.2f}-{h.end:8.2f}  {h.score:.3f}  {h.text}")
            return
    except VideoseekError as exc:
        _fail(exc)
    if transcript.source == "none":
        _err.print(f"{escape(str(video))} has no audio stream: nothing is said")
    if fmt == "json":
        print(transcript.model_copy(update={"segments": segs}).model_dump_json(indent=2))
    elif fmt == "srt":
        print(to_srt(segs), end="")
    elif fmt == "vtt":
        print(to_vtt(segs), end="")
    else:
        for s in segs:
            print(f"[{s.start:8.2f} - {s.end:8.2f}] {s.text}")


def register(app: typer.Typer) -> None:
    """Attach the speech commands to the ``videoseek`` app."""
    app.command("transcript")(transcript_command)
