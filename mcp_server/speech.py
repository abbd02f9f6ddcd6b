"""Speech over MCP: ``search_transcript``, ``get_transcript``, the transcript resource, and
speech hits fused into ``search_moments``.

- ``search_transcript(video, query, top_k?, start_time?, end_time?)`` - where something is said in
  one video: sentences with start/end times (structured output
  :class:`~agent_tools.types.MomentSearchResult`, ``source="speech"`` moments quoting the text).
- ``get_transcript(video, start_time?, end_time?)`` - what is said in a time range
  (:class:`~agent_tools.types.Transcript`).
- Resource ``videoseek://videos/{video_id}/transcript`` - an indexed video's timed transcript (text).
- :func:`fuse_speech` - ``search_moments`` adds the corpus speech index's hits (when
  ``speech.sqlite`` exists beside the index) to the visual ones, one ranking.

``video`` resolves exactly as for the frame tools (an index id or a path under a media root,
checked at call time). A video's first transcription runs in the background, one at a time; a
call waits up to ``wait_s`` with progress notifications, then answers "call again" while the
transcription goes on, so no call outlives a host's timeout. Videos longer than
``VIDEOSEEK_MAX_VIDEO_DURATION_S`` are refused, as for frames.
"""

# No ``from __future__ import annotations``: the SDK reads the tool signatures.

import concurrent.futures
import inspect
import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from agent_tools.config import Settings
from agent_tools.display import json_safe
from agent_tools.errors import VideoseekError
from agent_tools.protocol import format_timestamp
from agent_tools.types import MomentSearchResult, Transcript

from .calls import check_query, get_state, resolve_video, run_engine, short, tool_error
from .state import ServerState, StateLoader

__all__ = ["register_speech", "fuse_speech", "speech_for"]

logger = logging.getLogger("videoseek.mcp")

_LOCK = threading.Lock()


class _Speech:
    """Per-server speech engines: the single-video searcher, the corpus speech index, ASR jobs."""

    def __init__(self, settings: Settings):
        from agent_tools.speech.searcher import SpeechSearcher

        self.searcher = SpeechSearcher.from_settings(settings)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoseek-asr")
        self.jobs: dict[str, concurrent.futures.Future] = {}
        self.index = None
        self.index_path: Optional[Path] = None

    def corpus_index(self, index_dir: Path):
        """The read-only ``speech.sqlite`` beside ``index_dir`` (``None`` when there is none)."""
        from agent_tools.speech.index import SPEECH_DB, SpeechIndex

        path = Path(index_dir) / SPEECH_DB
        if not path.exists():
            return None
        if self.index is None or self.index_path != path:
            self.index = SpeechIndex(path, self.searcher.encoder, read_only=True)
            self.index_path = path
        return self.index


def speech_for(state: ServerState) -> _Speech:
    """The speech engines of ``state`` (created on first use)."""
    with _LOCK:
        sp = getattr(state, "_speech_engines", None)
        if sp is None:
            sp = _Speech(state.settings)
            state._speech_engines = sp  # type: ignore[attr-defined]
        return sp


def fuse_speech(state: ServerState, visual: MomentSearchResult, query: str, top_k: int, video_id: Optional[str]):
    """``visual`` with the corpus speech hits fused in (unchanged when there is no speech index)."""
    from agent_tools.speech.corpus import fuse_moments

    try:
        index = speech_for(state).corpus_index(state.index_dir)
    except VideoseekError as exc:  # e.g. the speech model is not installed: frames still answer
        logger.warning("speech search unavailable: %s", exc)
        index = None
    if index is None:
        return visual.model_copy(update={"moments": visual.moments[:top_k]})
    said = index.search(query, top_k=max(20, 2 * top_k), video_ids=[video_id] if video_id else None)
    return visual.model_copy(update={"moments": fuse_moments(visual.moments, said, top_k=top_k)})


def register_speech(server: MCPServer, settings: Settings, loader: StateLoader, *, wait_s: float) -> None:
    """Add the speech tools and the transcript resource to ``server``."""
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    VideoArg = Annotated[
        str, Field(description="The video: an id from list_videos or search_moments, or a file path under the "
                   "server's media roots.")
    ]
    Start = Annotated[Optional[float], Field(ge=0, strict=True, description="Range start in seconds (default 0).")]
    End = Annotated[Optional[float], Field(gt=0, strict=True, description="Range end in seconds (default: the end).")]

    async def transcript_of(state: ServerState, video: str, ctx: Context) -> tuple[Any, Transcript]:
        target = await resolve_video(state, video)
        sp = speech_for(state)
        key = str(target.path)
        if not sp.searcher.store.has(target.path):
            from agent_tools.video import probe

            info = await anyio.to_thread.run_sync(probe, target.path)
            if info.duration > state.settings.max_video_duration_s:
                raise ToolError(
                    f"video {target.ref!r} is {info.duration:.0f} s long, over this server's limit of "
                    f"{state.settings.max_video_duration_s:.0f} s (VIDEOSEEK_MAX_VIDEO_DURATION_S); "
                    "transcribe it with `videoseek transcript` or raise the limit"
                )
        with _LOCK:
            job = sp.jobs.get(key)
            if job is None or (job.done() and job.exception() is not None):
                job = sp.pool.submit(sp.searcher.store.get, target.path)
                sp.jobs[key] = job
        t0 = time.monotonic()
        while not job.done():
            waited = time.monotonic() - t0
            if waited >= wait_s:
                return target, None  # type: ignore[return-value]
            try:
                await ctx.report_progress(waited, wait_s, f"transcribing {target.ref}")
            except Exception:  # noqa: BLE001 - progress is best effort
                pass
            await anyio.sleep(0.25)
        try:
            return target, job.result()
        except VideoseekError as exc:
            raise tool_error(exc, f"transcribing {target.ref!r}") from exc

    def later(target: Any) -> CallToolResult:
        return CallToolResult(content=[TextContent(
            type="text",
            text=f"Transcribing {target.ref} (first time; it goes on in the background). Call again in about "
            f"{int(wait_s)} s.",
        )])

    async def search_transcript(
        video: VideoArg,
        query: Annotated[str, Field(description="What is said, in your own words (must not be empty).")],
        top_k: Annotated[int, Field(ge=1, le=20, strict=True, description="Sentences to return.")] = 5,
        start_time: Start = None,
        end_time: End = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, MomentSearchResult]:
        """Find where something is said in one video.

        Returns the best matching sentences of the video's speech with their start and end times in
        seconds (best first). Look at a moment with seek_video_frames(video, query, start_time, end_time).
        """
        state = await get_state(ctx)
        check_query(query, state.settings.max_query_chars)
        if not query.strip():
            raise ToolError("query must describe what is said (it is empty)")
        target, transcript = await transcript_of(state, video, ctx)
        if transcript is None:
            return later(target)
        sp = speech_for(state)
        result = await run_engine(
            state, lambda: sp.searcher.search(target.path, query, top_k=top_k, start_time=start_time,
                                              end_time=end_time),
            f"searching the speech of {target.ref!r}",
        )
        result = result.model_copy(update={"moments": [
            m.model_copy(update={"video_id": target.video_id or target.ref, "path": transcript.path})
            for m in result.moments
        ]})
        lines = [f"{len(result.moments)} sentences of {target.ref} matching {short(query)!r}:"] + [
            f"{i}. [{format_timestamp(m.start)} - {format_timestamp(m.end)}] score {m.score:.3f}: {m.text}"
            for i, m in enumerate(result.moments, 1)
        ]
        if transcript.source == "none":
            lines = [f"{target.ref} has no audio stream: nothing is said."]
        elif not result.moments:
            lines.append("Nothing is said in that range.")
        return CallToolResult(content=[TextContent(type="text", text="\n".join(lines))],
                              structured_content=json_safe(result.model_dump(mode="json")))

    async def get_transcript(
        video: VideoArg,
        start_time: Start = None,
        end_time: End = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, Transcript]:
        """Read what is said in one video between two times, sentence by sentence with times in seconds."""
        state = await get_state(ctx)
        target, transcript = await transcript_of(state, video, ctx)
        if transcript is None:
            return later(target)
        try:
            part = speech_for(state).searcher.transcript(target.path, start_time, end_time)
        except VideoseekError as exc:
            raise tool_error(exc, f"reading the transcript of {target.ref!r}") from exc
        if part.source == "none":
            text = f"{target.ref} has no audio stream: nothing is said."
        else:
            text = "\n".join(f"[{format_timestamp(s.start)} - {format_timestamp(s.end)}] {s.text}"
                             for s in part.segments) or "Nothing is said in that range."
        part = part.model_copy(update={"segments": [s.model_copy(update={"words": []}) for s in part.segments]})
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=json_safe(part.model_dump(mode="json")))

    for fn, title in ((search_transcript, "Search transcript"), (get_transcript, "Get transcript")):
        server.add_tool(fn, title=title, description=inspect.cleandoc(fn.__doc__ or ""), annotations=read_only)

    @server.resource(
        "videoseek://videos/{video_id}/transcript",
        name="video-transcript",
        title="Video transcript",
        description="What is said in one indexed video, one timed sentence per line (from the index's speech pass).",
        mime_type="text/plain",
    )
    async def transcript_resource(video_id: str) -> str:
        try:
            state = await loader.get()
        except ToolError as exc:
            raise ResourceError(str(exc)) from exc

        def build() -> str:
            record = state.lookup_indexed(video_id)
            if record is None or record.video_id != video_id:
                raise ResourceError(f"no indexed video with id {video_id!r}; see videoseek://videos")
            try:
                state.resolve_video(video_id)  # the media-root check, at call time
            except (VideoseekError, ToolError) as exc:
                raise ResourceError(str(exc)) from exc
            index = speech_for(state).corpus_index(state.index_dir)
            rows = index.transcript_text(video_id) if index is not None else []
            if index is None or video_id not in index.videos():
                raise ResourceError(
                    f"video {video_id!r} has no transcript in the index; run `videoseek index` with speech on"
                )
            return "\n".join(f"[{format_timestamp(a)} - {format_timestamp(b)}] {t}" for a, b, t in rows)

        return await anyio.to_thread.run_sync(build)
