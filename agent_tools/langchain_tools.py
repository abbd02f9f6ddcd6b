"""LangChain tools over the search engines, for any LangChain / LangGraph agent.

Every tool uses ``response_format="content_and_artifact"``:

- *content* (what the model reads): a short text line, then for each frame its timestamp as
  text (``12.5s``) followed by the frame as a standard image block
  (``{"type": "image", "base64": ..., "mime_type": "image/jpeg"}``);
- *artifact* (what code reads, never sent to the model): the typed result,
  :class:`~agent_tools.types.FrameSelection` or :class:`~agent_tools.types.MomentSearchResult`,
  without pixels.

Tools:

- :func:`make_seek_tool` - ``seek_video_frames(video, query, start_time, end_time, num_frames)``.
- :func:`make_preview_tool` - ``preview_video(video, num_frames)``: evenly spaced frames and the duration.
- :func:`make_moment_tool` - ``search_moments(query, top_k, video)`` over a corpus index.

Bad arguments (a reversed window, an unknown video) come back as
``ToolMessage(status="error")`` whose text says what is valid, so the model can retry.

Note: a LangGraph agent keeps tool messages in its state, so with a checkpointer these
images are stored in every checkpoint; the video graphs in :mod:`agent_tools.graphs` keep
references instead.

Usage::

    from agent_tools.langchain_tools import make_seek_tool
    seek = make_seek_tool(searcher)
    msg = seek.invoke({"type": "tool_call", "id": "1", "name": "seek_video_frames",
                       "args": {"video": "clip.mp4", "query": "a red car"}})
    msg.content      # text + image blocks;   msg.artifact  # FrameSelection
"""

from __future__ import annotations

from typing import Any, Optional

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, Field

from agent_tools import protocol
from agent_tools.errors import VideoseekError
from agent_tools.policies.base import image_to_base64
from agent_tools.types import FrameSelection, MomentSearchResult

__all__ = [
    "make_seek_tool",
    "make_preview_tool",
    "make_moment_tool",
    "frame_content",
    "SeekArgs",
    "MomentArgs",
]

_MAX = protocol.MAX_FRAMES_PER_SEARCH


class SeekArgs(BaseModel):
    """Arguments of ``seek_video_frames``."""

    video: str = Field(description="Path or id of the video to search.")
    query: str = Field(
        "",
        description="What to look for: the object, person, scene or event, described concretely. "
        "Empty: evenly spaced frames.",
    )
    start_time: Optional[float] = Field(None, ge=0, description="Window start in seconds (default 0).")
    end_time: Optional[float] = Field(None, gt=0, description="Window end in seconds (default: the end).")
    num_frames: int = Field(_MAX, ge=1, le=_MAX, description=f"Frames to return, 1 to {_MAX}.")


class _SeekArgsBound(BaseModel):
    query: str = SeekArgs.model_fields["query"]
    start_time: Optional[float] = SeekArgs.model_fields["start_time"]
    end_time: Optional[float] = SeekArgs.model_fields["end_time"]
    num_frames: int = SeekArgs.model_fields["num_frames"]


class _PreviewArgs(BaseModel):
    video: str = Field(description="Path or id of the video.")
    num_frames: int = Field(_MAX, ge=1, le=_MAX, description=f"Evenly spaced frames, 1 to {_MAX}.")


class MomentArgs(BaseModel):
    """Arguments of ``search_moments``."""

    query: str = Field(description="Description of the moment to find.")
    top_k: int = Field(5, ge=1, le=50, description="How many moments to return.")
    video: Optional[str] = Field(None, description="Only search this indexed video (id or path).")


def frame_content(
    images: list[Any],
    timestamps: list[float],
    *,
    header: Optional[str] = None,
    footer: Optional[str] = None,
    jpeg_quality: int = 70,
) -> list[dict[str, Any]]:
    """Content blocks: optional header, then ``"12.5s"`` text + JPEG image block per frame, then footer."""
    blocks: list[dict[str, Any]] = []
    if header:
        blocks.append({"type": "text", "text": header})
    for t, img in zip(timestamps, images):
        blocks.append({"type": "text", "text": protocol.format_timestamp(t)})
        blocks.append(
            {"type": "image", "base64": image_to_base64(img, quality=jpeg_quality), "mime_type": "image/jpeg"}
        )
    if footer:
        blocks.append({"type": "text", "text": footer})
    return blocks


def _validation_message(exc: Exception) -> str:
    """A pydantic validation error as one line naming each bad argument and its valid range."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"invalid arguments: {exc}"
    parts = []
    for e in errors():
        loc = ".".join(str(x) for x in e.get("loc", ())) or "arguments"
        parts.append(f"{loc}: {e.get('msg')} (got {e.get('input')!r})")
    return "invalid arguments: " + "; ".join(parts)


def _strip_images(sel: FrameSelection) -> FrameSelection:
    for f in sel.frames:
        f.image = None
    return sel


def make_seek_tool(
    searcher: Any,
    *,
    video: Optional[str] = None,
    max_side: Optional[int] = 384,
    jpeg_quality: int = 70,
    name: str = protocol.SEEK_TOOL_NAME,
) -> StructuredTool:
    """The temporal search tool.

    Args:
        searcher: A ``TemporalSearcher`` (``seek`` and ``frames``).
        video: Bind the tool to one video (the ``video`` argument disappears from its schema).
        max_side: Longest side of the frames sent to the model (None: native size).
        jpeg_quality: JPEG quality of the frames sent.
        name: Tool name.

    Returns:
        A ``StructuredTool`` returning ``(content, FrameSelection)``.
    """

    def seek(
        query: str = "",
        start_time: Optional[float] = None,
        end_time: Optional[float] = None,
        num_frames: int = _MAX,
        video: Optional[str] = video,
    ):
        try:
            sel = searcher.seek(video, query, start_time=start_time, end_time=end_time, num_frames=num_frames)
            images = searcher.frames(video, sel.timestamps, max_side=max_side) if sel.frames else []
        except VideoseekError as exc:
            raise ToolException(str(exc)) from exc
        fmt = protocol.format_timestamp
        how = f"query: {query!r}" if query else "evenly spaced"
        header = (
            f"{len(sel.frames)} frames of {sel.video} between {fmt(sel.start_time)} and "
            f"{fmt(sel.end_time)} (video length {fmt(sel.duration)}, {how}):"
        )
        footer = f"Timestamps: {protocol.format_timestamps(sel.timestamps)}." if sel.frames else "No frames."
        content = frame_content(
            images, sel.timestamps, header=header, footer=footer, jpeg_quality=jpeg_quality
        )
        return content, _strip_images(sel)

    if video is None:

        def func(
            video: str,
            query: str = "",
            start_time: Optional[float] = None,
            end_time: Optional[float] = None,
            num_frames: int = _MAX,
        ):
            return seek(query, start_time, end_time, num_frames, video=video)

        schema: type[BaseModel] = SeekArgs
        where = "a video"
    else:

        def func(
            query: str = "",
            start_time: Optional[float] = None,
            end_time: Optional[float] = None,
            num_frames: int = _MAX,
        ):
            return seek(query, start_time, end_time, num_frames)

        schema = _SeekArgsBound
        where = f"the video {video}"

    return StructuredTool.from_function(
        func=func,
        name=name,
        description=(
            f"Find the frames of {where} that best match a text description, inside an optional time "
            f"window (seconds), and see them with their timestamps. Returns at most {_MAX} frames."
        ),
        args_schema=schema,
        response_format="content_and_artifact",
        handle_tool_error=True,
        handle_validation_error=_validation_message,
    )


def make_preview_tool(
    searcher: Any, *, max_side: Optional[int] = 384, jpeg_quality: int = 70, name: str = "preview_video"
) -> StructuredTool:
    """A tool returning evenly spaced frames of a video and its duration (a first look).

    Args:
        searcher: A ``TemporalSearcher`` (``preview`` and ``frames``).
        max_side: Longest side of the frames sent to the model.
        jpeg_quality: JPEG quality.
        name: Tool name.

    Returns:
        A ``StructuredTool`` returning ``(content, FrameSelection)``.
    """

    def func(video: str, num_frames: int = _MAX):
        try:
            sel = searcher.preview(video, num_frames=num_frames)
            images = searcher.frames(video, sel.timestamps, max_side=max_side) if sel.frames else []
        except VideoseekError as exc:
            raise ToolException(str(exc)) from exc
        header = (
            f"Preview of {sel.video}: {len(sel.frames)} evenly spaced frames; "
            f"length {sel.duration:.1f} seconds."
        )
        content = frame_content(images, sel.timestamps, header=header, jpeg_quality=jpeg_quality)
        return content, _strip_images(sel)

    return StructuredTool.from_function(
        func=func,
        name=name,
        description=(
            "Look at evenly spaced frames of a whole video, with their timestamps, and learn its length."
        ),
        args_schema=_PreviewArgs,
        response_format="content_and_artifact",
        handle_tool_error=True,
        handle_validation_error=_validation_message,
    )


def make_moment_tool(
    moment_searcher: Any,
    *,
    frames: Any = None,
    max_side: int = 256,
    jpeg_quality: int = 70,
    name: str = protocol.MOMENT_TOOL_NAME,
) -> StructuredTool:
    """The corpus moment search tool.

    Args:
        moment_searcher: A ``MomentSearcher`` (``search(query, top_k=, video=)``).
        frames: Optional frame resolver (e.g. ``TemporalSearcher.frames``); when given, each
            moment's best frame is shown as a thumbnail after its line (or, when it cannot be
            read, a line saying why).
        max_side: Thumbnail size.
        jpeg_quality: JPEG quality.
        name: Tool name.

    Returns:
        A ``StructuredTool`` returning ``(content, MomentSearchResult)``.
    """

    def func(query: str, top_k: int = 5, video: Optional[str] = None):
        try:
            res: MomentSearchResult = moment_searcher.search(query, top_k=top_k, video=video)
        except VideoseekError as exc:
            raise ToolException(str(exc)) from exc
        blocks: list[dict[str, Any]] = [
            {
                "type": "text",
                "text": f"{len(res.moments)} moments for {query!r} "
                f"(searched {res.num_videos_searched} videos):",
            }
        ]
        for i, m in enumerate(res.moments, 1):
            blocks.append(
                {
                    "type": "text",
                    "text": (
                        f"{i}. video {m.video_id} ({m.path}) from {protocol.format_timestamp(m.start)} to "
                        f"{protocol.format_timestamp(m.end)}, score {m.score:.3f}"
                    ),
                }
            )
            if frames is not None:
                t = m.peak_time if m.peak_time is not None else (m.start + m.end) / 2
                try:
                    img = frames(m.path, [t], max_side=max_side)[0]
                except VideoseekError as exc:  # e.g. the file moved since indexing: say so, keep the rest
                    blocks.append({"type": "text", "text": f"(no thumbnail: {exc})"})
                    continue
                blocks += frame_content([img], [t], jpeg_quality=jpeg_quality)
        if not res.moments:
            blocks.append({"type": "text", "text": "Nothing matched; try other words."})
        return blocks, res

    return StructuredTool.from_function(
        func=func,
        name=name,
        description=(
            "Search every indexed video for the moments matching a description; returns ranked "
            "(video, start, end, score), times in seconds."
        ),
        args_schema=MomentArgs,
        response_format="content_and_artifact",
        handle_tool_error=True,
        handle_validation_error=_validation_message,
    )
