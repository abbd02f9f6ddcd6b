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
- :func:`make_moment_tool` - ``search_moments(query, top_k, video)`` over a corpus index (speech
  hits quote what is said).
- :func:`make_transcript_tools` - ``search_transcript(video, query, ...)`` (where is something said)
  and ``get_transcript(video, start_time, end_time)`` (what is said), over a
  :class:`~agent_tools.speech.searcher.SpeechSearcher`.
- :func:`tool_images_to_user`, :func:`with_tool_images_as_user` - move tool images into a
  following user message for chat-completions APIs (see below).
- :func:`seek_args_model` - the argument model of ``seek_video_frames`` for a frame cap.

The frame tools' ``num_frames`` follows the runtime settings: its bound and default are the
searcher's ``max_frames`` (``VIDEOSEEK_MAX_FRAMES``, default 8), or ``max_frames=`` when given.

Bad arguments (a reversed window, an unknown video) come back as
``ToolMessage(status="error")`` whose text says what is valid, so the model can retry.

Images and chat-completions APIs: OpenAI's ``/chat/completions`` (and many OpenAI-compatible
servers, vLLM included) accept only text in ``tool``-role messages. Wrap the model with
:func:`with_tool_images_as_user` (or call :func:`tool_images_to_user` on the messages) and each
run of tool messages is sent text-only (timestamps, scores), followed by one user message
holding their images, each after its timestamp - the layout the project's own policies use::

    model = with_tool_images_as_user(ChatOpenAI(model="gpt-4o-mini").bind_tools(tools))

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

from typing import Any, Optional, Sequence

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, Field, create_model

from agent_tools import protocol
from agent_tools.config import get_settings
from agent_tools.errors import InvalidArgumentError, VideoseekError
from agent_tools.policies.base import image_to_base64
from agent_tools.types import FrameSelection, MomentSearchResult

__all__ = [
    "make_seek_tool",
    "make_preview_tool",
    "make_moment_tool",
    "make_transcript_tools",
    "frame_content",
    "tool_images_to_user",
    "with_tool_images_as_user",
    "seek_args_model",
    "SeekArgs",
    "MomentArgs",
]

_MAX = protocol.MAX_FRAMES_PER_SEARCH


def _frame_cap(searcher: Any, max_frames: Optional[int]) -> int:
    """The frame cap of a tool: ``max_frames``, else the searcher's, else ``Settings.max_frames``."""
    cap = max_frames if max_frames is not None else getattr(searcher, "max_frames", None)
    if cap is None:
        cap = get_settings().max_frames
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise InvalidArgumentError(f"max_frames must be an integer >= 1, got {cap!r}")
    return cap


def seek_args_model(max_frames: int, *, bound: bool = False) -> type[BaseModel]:
    """The argument model of ``seek_video_frames``: ``num_frames`` in ``1..max_frames``, default ``max_frames``.

    Args:
        max_frames: Frame cap (the searcher's ``max_frames``).
        bound: Leave out ``video`` (a tool bound to one video).

    Returns:
        A pydantic model class.
    """
    fields: dict[str, Any] = {}
    if not bound:
        fields["video"] = (str, Field(description="Path or id of the video to search."))
    fields["query"] = (
        str,
        Field(
            "",
            description="What to look for: the object, person, scene or event, described concretely. "
            "Empty: evenly spaced frames.",
        ),
    )
    fields["start_time"] = (
        Optional[float],
        Field(None, ge=0, description="Window start in seconds (default 0)."),
    )
    fields["end_time"] = (
        Optional[float],
        Field(None, gt=0, description="Window end in seconds (default: the end)."),
    )
    fields["num_frames"] = (
        int,
        Field(
            max_frames,
            ge=1,
            le=max_frames,
            description=f"Frames to return, 1 to {max_frames} (default {max_frames}).",
        ),
    )
    name = "SeekArgsBound" if bound else "SeekArgs"
    return create_model(name, __doc__="Arguments of ``seek_video_frames``.", **fields)


def _preview_args_model(max_frames: int) -> type[BaseModel]:
    return create_model(
        "PreviewArgs",
        __doc__="Arguments of ``preview_video``.",
        video=(str, Field(description="Path or id of the video.")),
        num_frames=(
            int,
            Field(
                max_frames,
                ge=1,
                le=max_frames,
                description=f"Evenly spaced frames, 1 to {max_frames} (default {max_frames}).",
            ),
        ),
    )


#: ``seek_video_frames`` arguments at the protocol's cap (8); the tools build theirs from the settings.
SeekArgs = seek_args_model(_MAX)


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
    max_frames: Optional[int] = None,
) -> StructuredTool:
    """The temporal search tool.

    Args:
        searcher: A ``TemporalSearcher`` (``seek`` and ``frames``).
        video: Bind the tool to one video (the ``video`` argument disappears from its schema).
        max_side: Longest side of the frames sent to the model (None: native size).
        jpeg_quality: JPEG quality of the frames sent.
        name: Tool name.
        max_frames: Bound and default of ``num_frames`` (default: ``searcher.max_frames``, else
            ``Settings.max_frames``, i.e. ``VIDEOSEEK_MAX_FRAMES``).

    Returns:
        A ``StructuredTool`` returning ``(content, FrameSelection)``.

    Raises:
        InvalidArgumentError: If ``max_frames`` is not an integer >= 1.
    """
    cap = _frame_cap(searcher, max_frames)

    def seek(
        query: str = "",
        start_time: Optional[float] = None,
        end_time: Optional[float] = None,
        num_frames: int = cap,
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
            num_frames: int = cap,
        ):
            return seek(query, start_time, end_time, num_frames, video=video)

        schema: type[BaseModel] = seek_args_model(cap)
        where = "a video"
    else:

        def func(
            query: str = "",
            start_time: Optional[float] = None,
            end_time: Optional[float] = None,
            num_frames: int = cap,
        ):
            return seek(query, start_time, end_time, num_frames)

        schema = seek_args_model(cap, bound=True)
        where = f"the video {video}"

    return StructuredTool.from_function(
        func=func,
        name=name,
        description=(
            f"Find the frames of {where} that best match a text description, inside an optional time "
            f"window (seconds), and see them with their timestamps. Returns at most {cap} frames."
        ),
        args_schema=schema,
        response_format="content_and_artifact",
        handle_tool_error=True,
        handle_validation_error=_validation_message,
    )


def make_preview_tool(
    searcher: Any,
    *,
    max_side: Optional[int] = 384,
    jpeg_quality: int = 70,
    name: str = "preview_video",
    max_frames: Optional[int] = None,
) -> StructuredTool:
    """A tool returning evenly spaced frames of a video and its duration (a first look).

    Args:
        searcher: A ``TemporalSearcher`` (``preview`` and ``frames``).
        max_side: Longest side of the frames sent to the model.
        jpeg_quality: JPEG quality.
        name: Tool name.
        max_frames: Bound and default of ``num_frames`` (as in :func:`make_seek_tool`).

    Returns:
        A ``StructuredTool`` returning ``(content, FrameSelection)``.

    Raises:
        InvalidArgumentError: If ``max_frames`` is not an integer >= 1.
    """
    cap = _frame_cap(searcher, max_frames)

    def func(video: str, num_frames: int = cap):
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
        args_schema=_preview_args_model(cap),
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
                        + (f", {m.source}" if m.source != "visual" else "")
                        + (f", said: {m.text!r}" if m.text else "")
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


class TranscriptSearchArgs(BaseModel):
    """Arguments of ``search_transcript``."""

    video: str = Field(description="Video path or index id.")
    query: str = Field(min_length=1, description="What is said, in your own words.")
    top_k: int = Field(5, ge=1, le=20, description="Sentences to return.")
    start_time: Optional[float] = Field(None, ge=0, description="Only speech after this time (seconds).")
    end_time: Optional[float] = Field(None, ge=0, description="Only speech before this time (seconds).")


class TranscriptArgs(BaseModel):
    """Arguments of ``get_transcript``."""

    video: str = Field(description="Video path or index id.")
    start_time: Optional[float] = Field(None, ge=0, description="Start of the range (seconds).")
    end_time: Optional[float] = Field(None, ge=0, description="End of the range (seconds).")


def make_transcript_tools(speech_searcher: Any, *, resolve: Any = None) -> list[StructuredTool]:
    """The speech tools: ``search_transcript`` and ``get_transcript``.

    Args:
        speech_searcher: A :class:`~agent_tools.speech.searcher.SpeechSearcher`.
        resolve: Optional ``resolve(video) -> path`` (e.g. index id -> file); identity by default.

    Returns:
        Two ``StructuredTool`` s; artifacts are a :class:`~agent_tools.types.MomentSearchResult`
        and a :class:`~agent_tools.types.Transcript`.
    """
    resolve = resolve or (lambda v: v)

    def search(video: str, query: str, top_k: int = 5, start_time: Optional[float] = None,
               end_time: Optional[float] = None):
        try:
            res = speech_searcher.search(resolve(video), query, top_k=top_k, start_time=start_time, end_time=end_time)
        except VideoseekError as exc:
            raise ToolException(str(exc)) from exc
        lines = [f"{len(res.moments)} spoken passages for {query!r}:"] + [
            f"{protocol.format_timestamp(m.start)}-{protocol.format_timestamp(m.end)} "
            f"(score {m.score:.3f}): {m.text}"
            for m in res.moments
        ]
        if not res.moments:
            lines.append("Nothing is said in that range.")
        return "\n".join(lines), res

    def transcript(video: str, start_time: Optional[float] = None, end_time: Optional[float] = None):
        try:
            t = speech_searcher.transcript(resolve(video), start_time, end_time)
        except VideoseekError as exc:
            raise ToolException(str(exc)) from exc
        if t.source == "none":
            return "The video has no audio stream: nothing is said.", t
        lines = [f"[{protocol.format_timestamp(s.start)}-{protocol.format_timestamp(s.end)}] {s.text}" for s in t.segments]
        return ("\n".join(lines) or "Nothing is said in that range."), t

    return [
        StructuredTool.from_function(
            func=search, name="search_transcript",
            description="Find where something is said in one video; returns the matching sentences with "
            "their start and end times in seconds.",
            args_schema=TranscriptSearchArgs, response_format="content_and_artifact",
            handle_tool_error=True, handle_validation_error=_validation_message,
        ),
        StructuredTool.from_function(
            func=transcript, name="get_transcript",
            description="Read what is said in one video between two times (seconds), sentence by sentence.",
            args_schema=TranscriptArgs, response_format="content_and_artifact",
            handle_tool_error=True, handle_validation_error=_validation_message,
        ),
    ]


# --------------------------------------------------------------------------- chat-completions delivery


def _is_image_block(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") in ("image", "image_url")


def tool_images_to_user(messages: Sequence[Any]) -> list[Any]:
    """Rewrite tool messages with images for APIs that accept only text in tool-role messages.

    Each ``ToolMessage`` holding image blocks keeps its id, name, status and artifact but its
    content becomes its text blocks joined by newlines (header, timestamps, scores); after each
    run of consecutive tool messages comes one ``HumanMessage`` holding their images, each after
    the text block that preceded it in the tool's content (its timestamp), under a line naming
    the tool call. Other messages pass through unchanged; the input is not modified.

    Args:
        messages: LangChain messages (e.g. a LangGraph agent's ``state["messages"]``).

    Returns:
        A new list of messages.
    """
    from langchain_core.messages import HumanMessage, ToolMessage

    out: list[Any] = []
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        if pending:
            out.append(HumanMessage(content=list(pending)))
            pending.clear()

    for m in messages:
        if not isinstance(m, ToolMessage):
            flush()
            out.append(m)
            continue
        content = m.content
        if not isinstance(content, list) or not any(_is_image_block(b) for b in content):
            out.append(m)
            continue
        texts: list[str] = []
        images: list[dict[str, Any]] = []
        label: Optional[str] = None
        for b in content:
            if isinstance(b, str):
                b = {"type": "text", "text": b}
            if _is_image_block(b):
                if label is not None:
                    images.append({"type": "text", "text": label})
                images.append(dict(b))
                label = None
            elif isinstance(b, dict) and b.get("type") == "text":
                texts.append(b.get("text", ""))
                label = b.get("text", "")
        n = sum(1 for b in images if _is_image_block(b))
        note = f"({n} image{'s' if n != 1 else ''} follow in the next user message.)"
        out.append(m.model_copy(update={"content": "\n".join(texts + [note])}))
        pending.append(
            {"type": "text", "text": f"Images returned by {m.name or 'the tool'} (call {m.tool_call_id}):"}
        )
        pending.extend(images)
    flush()
    return out


def with_tool_images_as_user(model: Any) -> Any:
    """``model`` behind :func:`tool_images_to_user`: a runnable for chat-completions APIs.

    Bind the tools first (``with_tool_images_as_user(ChatOpenAI(...).bind_tools(tools))``); the
    result takes a message list (or a prompt value) like the model does.

    Args:
        model: A chat model or runnable taking messages.

    Returns:
        A ``Runnable``.
    """
    from langchain_core.prompt_values import PromptValue
    from langchain_core.runnables import RunnableLambda

    def convert(value: Any) -> list[Any]:
        if isinstance(value, PromptValue):
            value = value.to_messages()
        return tool_images_to_user(list(value))

    return RunnableLambda(convert, name="tool_images_to_user") | model
