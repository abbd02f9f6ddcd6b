"""The MCP tools: ``seek_video_frames``, ``preview_video``, ``video_info``, ``list_videos``, ``search_moments``.

:func:`register_tools` adds them to an :class:`MCPServer`. Names, argument names and result
models are a contract (see :mod:`mcp_server.server`). Integer and number arguments are
*strict*: ``true`` or ``"8"`` for ``num_frames`` is refused, as the library refuses it. Text
queries are bounded (``VIDEOSEEK_MAX_QUERY_CHARS``) and echoed back only in part.
"""

# No ``from __future__ import annotations`` here: the SDK reads the tool signatures, whose
# ``Field`` bounds close over ``register_tools``'s locals.

import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, Optional

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from agent_tools.config import Settings
from agent_tools.display import display_path, json_safe
from agent_tools.errors import IndexCorruptError
from agent_tools.protocol import format_timestamp, format_timestamps
from agent_tools.types import FrameSelection, MomentSearchResult, VideoInfo

from .calls import (
    check_moment_query,
    check_query,
    encode_hits,
    facts_text,
    frames_content,
    get_state,
    index_text,
    resolve_video,
    run_engine,
    selection_sent,
    short,
    untrained_note,
    wait_for_embeddings,
)
from .limits import check_video_limits
from .models import VideoPage
from .speech import fuse_speech
from .state import INDEX_HINT

__all__ = ["register_tools", "MAX_TOP_K", "MAX_PAGE"]

MAX_TOP_K = 50
MAX_PAGE = 500


def register_tools(
    server: MCPServer, settings: Settings, *, image_max_side: int, image_budget: int, embed_wait_s: float
) -> None:
    """Add the five tools to ``server``.

    Args:
        server: The server.
        settings: Its settings (``max_frames`` bounds ``num_frames``).
        image_max_side: Longest side of returned frames before any budget downscaling.
        image_budget: Base64 characters allowed for the images of one result.
        embed_wait_s: How long a first search waits for the embedding pass.
    """
    max_frames = int(settings.max_frames)
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    def tool(title: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a read-only tool; its docstring, dedented, is what the model reads."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            server.add_tool(
                fn, title=title, description=inspect.cleandoc(fn.__doc__ or ""), annotations=read_only
            )
            return fn

        return register

    VideoArg = Annotated[
        str,
        Field(
            description="The video: an id from list_videos or search_moments, or a file path under the "
            "server's media roots (relative paths are taken from the roots)."
        ),
    ]

    # ------------------------------------------------------------------ seek_video_frames
    @tool("Seek video frames")
    async def seek_video_frames(
        video: VideoArg,
        query: Annotated[
            str,
            Field(
                description="Describe the object, person, scene or event of interest in the video "
                "thoroughly and clearly. An empty string returns frames evenly spaced over the window "
                "instead (no search, no scores)."
            ),
        ],
        start_time: Annotated[
            Optional[float], Field(ge=0, strict=True, description="Window start in seconds (default 0).")
        ] = None,
        end_time: Annotated[
            Optional[float],
            Field(
                gt=0,
                strict=True,
                description="Window end in seconds (default: the end of the video; later values are "
                "clamped to the end).",
            ),
        ] = None,
        num_frames: Annotated[
            Optional[int],
            Field(
                ge=1,
                le=max_frames,
                strict=True,
                description=f"Frames to return, 1 to {max_frames} (default {max_frames}).",
            ),
        ] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, FrameSelection]:
        """Search and select video frames according to a textual query and a temporal window.

        Returns the frames of one video that best match the query inside [start_time, end_time]
        (relevant and mutually diverse), in time order, as images each preceded by its timestamp.
        Time is in seconds from the start of the video. Search the whole video first, then narrow
        the window around promising timestamps and search again to look closer. With an empty
        query the frames are evenly spaced over the window.
        """
        state = await get_state(ctx)
        check_query(query, state.settings.max_query_chars)
        if start_time is not None and end_time is not None and start_time >= end_time:
            raise ToolError(
                f"start_time ({start_time:g}) must be less than end_time ({end_time:g}); both are seconds "
                "from the start of the video"
            )
        target = await resolve_video(state, video)
        await wait_for_embeddings(state, target, ctx, embed_wait_s)
        selection: FrameSelection = await run_engine(
            state,
            lambda: state.temporal.seek(
                target.path,
                query,  # empty or blank: uniform sampling of the window (TemporalSearcher.seek)
                start_time=start_time,
                end_time=end_time,
                num_frames=num_frames or max_frames,
                with_images=True,
                max_side=image_max_side,
                video_id=target.video_id or target.ref,
            ),
            f"searching {target.ref!r}",
        )
        hits, batch, dropped = await encode_hits(
            state, target, list(selection.frames), image_max_side, image_budget
        )
        out = selection_sent(selection, hits)
        uniform = out.method == "uniform"
        window = f"[{format_timestamp(out.start_time)}, {format_timestamp(out.end_time)}]"
        if uniform:
            what = f"evenly spaced frames of {out.video} (empty query)"
        else:
            what = f"frames of {out.video} for {short(out.query)!r}"
        head = f"{len(hits)} {what} in {window} (video length {format_timestamp(out.duration)}):"
        if hits:
            tail = (
                f"These frames are at {format_timestamps(out.timestamps)}. If they answer the question, "
                "answer; otherwise search again with a "
                + ("query" if uniform else "different query")
                + " or a narrower time window."
            )
        else:
            tail = (
                "No frames were sampled in this window; widen it or check the video's length with video_info."
            )
        if dropped:
            which = "" if uniform else "lower-scoring "
            tail += f" ({dropped} {which}frames were left out to keep the result under the size limit.)"
        labels = [f"score {h.score:.3f}" for h in hits if h.score is not None]
        content = [
            *untrained_note(state),
            TextContent(type="text", text=head),
            *frames_content(out.timestamps, batch, labels if hits and len(labels) == len(hits) else None),
            TextContent(type="text", text=tail),
            TextContent(type="text", text=facts_text(target, batch)),
        ]
        return CallToolResult(content=content, structured_content=json_safe(out.model_dump(mode="json")))

    # ------------------------------------------------------------------ preview_video
    @tool("Preview video")
    async def preview_video(
        video: VideoArg,
        num_frames: Annotated[
            int,
            Field(ge=1, le=max_frames, strict=True, description=f"Evenly spaced frames to return, 1 to {max_frames}."),
        ] = max_frames,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, FrameSelection]:
        """Get an overview of one video: evenly spaced frames, each after its timestamp, and the duration.

        Use it first to see what a video contains and how long it is (seconds), then use
        seek_video_frames to look for something specific.
        """
        state = await get_state(ctx)
        target = await resolve_video(state, video)

        def run() -> tuple[VideoInfo, FrameSelection]:
            info = state.temporal.info(target.path)
            check_video_limits(info.model_copy(update={"duration": 0.0}), state.settings)  # frame size only
            selection = state.temporal.preview(
                target.path,
                num_frames=num_frames,
                with_images=True,
                max_side=image_max_side,
                video_id=target.video_id or target.ref,
            )
            return info, selection

        info, selection = await run_engine(state, run, f"previewing {target.ref!r}")
        hits, batch, dropped = await encode_hits(
            state, target, list(selection.frames), image_max_side, image_budget
        )
        out = selection_sent(selection, hits)
        content = [
            TextContent(
                type="text",
                text=f"Preview of {out.video}: {len(hits)} evenly spaced frames; the video lasts "
                f"{format_timestamp(out.duration)} ({info.width}x{info.height}, {info.fps:g} fps)."
                + (
                    f" {dropped} frames were left out to keep the result under the size limit."
                    if dropped
                    else ""
                ),
            ),
            *frames_content(out.timestamps, batch),
            TextContent(type="text", text=facts_text(target, batch)),
        ]
        return CallToolResult(content=content, structured_content=json_safe(out.model_dump(mode="json")))

    # ------------------------------------------------------------------ video_info
    @tool("Video info")
    async def video_info(
        video: VideoArg,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, VideoInfo]:
        """Get the facts of one video: duration in seconds, frame rate, size, codec, and index status."""
        state = await get_state(ctx)
        target = await resolve_video(state, video)
        info: VideoInfo = await run_engine(
            state, lambda: state.temporal.info(target.path), f"probing {target.ref!r}"
        )
        structured = json_safe(info.model_dump(mode="json"))
        content = [
            TextContent(type="text", text=json.dumps(structured, indent=2)),
            TextContent(type="text", text=f"{target.ref} is {index_text(target)}."),
        ]
        return CallToolResult(content=content, structured_content=structured)

    # ------------------------------------------------------------------ list_videos
    @tool("List indexed videos")
    async def list_videos(
        status: Annotated[
            Optional[Literal["indexed", "pending", "failed"]],
            Field(description="Only videos with this index status; default: all."),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE, strict=True, description="Videos per page.")] = 50,
        offset: Annotated[int, Field(ge=0, strict=True, description="Videos to skip (for paging).")] = 0,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> VideoPage:
        """List the videos in the corpus index (id, path, duration, status), a page at a time, sorted by path.

        The ids work as the `video` argument of the other tools.
        """
        state = await get_state(ctx)

        def run() -> list[Any]:
            index = state.require_index()
            try:
                return list(index.list_videos(status=status))
            except IndexCorruptError as exc:
                raise state.index_damaged(exc) from exc

        records = await run_engine(state, run, "listing videos")
        page = records[offset : offset + limit]
        nxt = offset + limit if offset + limit < len(records) else None
        return VideoPage(total=len(records), offset=offset, next_offset=nxt, videos=page)

    # ------------------------------------------------------------------ search_moments
    @tool("Search moments")
    async def search_moments(
        query: Annotated[
            str,
            Field(
                description="Describe the moment to find: who or what, doing what, where (must not be empty)."
            ),
        ],
        top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K, strict=True, description="How many moments to return.")] = 5,
        video: Annotated[
            Optional[str],
            Field(description="Restrict the search to this indexed video (id or path); default: all videos."),
        ] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, MomentSearchResult]:
        """Search all indexed videos for the moments that match a description.

        Returns ranked moments as (video id, start, end, score), times in seconds, best first. Look at
        a moment with seek_video_frames(video=<id>, query=..., start_time=<start>, end_time=<end>).
        """
        state = await get_state(ctx)
        check_query(query, state.settings.max_query_chars)
        query = check_moment_query(query)
        if video is not None and not video.strip():
            raise ToolError("video must be an indexed video id (see list_videos), or be left out")

        def run() -> MomentSearchResult:
            state.require_index()
            moments_searcher = state.moments
            video_id = None
            if video is not None:
                record = state.lookup_indexed(video.strip())
                if record is None:
                    raise ToolError(
                        f"video {video!r} is not in the corpus index; use an id from list_videos, or leave "
                        "video out to search every indexed video"
                    )
                video_id = record.video_id
            if state.indexed_count() == 0:
                raise ToolError(
                    f"the corpus index at {state.index_dir} holds no indexed videos yet; {INDEX_HINT}"
                )
            try:
                visual = moments_searcher.search(query, top_k=max(20, 2 * top_k), video=video_id)
            except IndexCorruptError as exc:
                raise state.index_damaged(exc) from exc
            return fuse_speech(state, visual, query, top_k, video_id)  # what is said, one ranking

        result: MomentSearchResult = await run_engine(state, run, f"searching moments for {short(query)!r}")
        for m in result.moments:  # a file name that is not UTF-8 travels as \xNN text
            m.path = display_path(m.path)
        moments = result.moments
        if moments:
            searched = result.num_videos_searched
            lines = [f"Top {len(moments)} moments for {short(query)!r} ({searched} videos searched):"]
            lines += [
                f"{rank}. video {m.video_id} [{format_timestamp(m.start)} - {format_timestamp(m.end)}] "
                f"score {m.score:.3f} ({m.path})"
                + (f" {m.source}, said: {short(m.text, 200)!r}" if m.text else "")
                for rank, m in enumerate(moments, 1)
            ]
            lines.append("Look closer with seek_video_frames(video=<id>, query, start_time, end_time).")
        else:
            lines = [f"No moments found for {short(query)!r} ({result.num_videos_searched} videos searched)."]
        content = [*untrained_note(state), TextContent(type="text", text="\n".join(lines))]
        return CallToolResult(content=content, structured_content=json_safe(result.model_dump(mode="json")))
