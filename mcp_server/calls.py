"""Helpers the MCP tools share: errors, worker threads, waiting for embeddings, JPEG payloads, texts.

- :func:`get_state` - the loaded :class:`~mcp_server.state.ServerState` of a call.
- :func:`tool_error` / :func:`run_engine` - engine calls in worker threads, every failure a
  readable ``ToolError``.
- :func:`wait_for_embeddings` - waits for a video's first embedding pass (with progress); a
  cancelled call detaches, and the last cancelled waiter cancels the pass.
- :func:`resolve_video` - a ``video`` argument to a local file (media-root allow-list).
- :func:`encode_hits` - JPEG frames under the payload budget.
- :func:`check_query` / :func:`short` - bounded queries, and queries echoed only in part.
- :func:`readable_validation_error` - one sentence for a rejected tool argument.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ImageContent, TextContent
from pydantic import ValidationError

from agent_tools.display import display_path
from agent_tools.errors import VideoseekError
from agent_tools.protocol import format_timestamp
from agent_tools.types import FrameSelection

from .media import EncodedBatch, base64_len, encode_frames
from .state import ResolvedVideo, ServerState

__all__ = [
    "get_state",
    "tool_error",
    "run_engine",
    "wait_for_embeddings",
    "resolve_video",
    "encode_hits",
    "selection_sent",
    "index_text",
    "facts_text",
    "frames_content",
    "untrained_note",
    "check_moment_query",
    "check_query",
    "short",
    "readable_validation_error",
]

logger = logging.getLogger("videoseek.mcp")
async def get_state(ctx: Context) -> ServerState:
    return await ctx.request_context.lifespan_context.get()


def tool_error(exc: BaseException, what: str) -> ToolError:
    """Map an engine exception to a ToolError whose text the model can act on."""
    if isinstance(exc, ToolError):
        return exc
    if isinstance(exc, VideoseekError):
        return ToolError(str(exc))
    # Not one of videoseek's own errors: most often a decoder choking on a file that is not a
    # video. The server is local, so the decoder's one-line reason is kept for the user.
    logger.error("unexpected %s while %s", type(exc).__name__, what, exc_info=exc)
    reason = " ".join(str(exc).split())[:200]
    return ToolError(
        f"failed while {what} ({type(exc).__name__}: {reason}). If the file is not a playable video, "
        "pass another one; the server logged the details and keeps serving other calls."
    )


async def run_engine(state: ServerState, fn: Callable[[], Any], what: str) -> Any:
    try:
        return await anyio.to_thread.run_sync(fn, limiter=state.limiter)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a readable isError result
        raise tool_error(exc, what) from exc


async def wait_for_embeddings(
    state: ServerState, target: ResolvedVideo, ctx: Context, wait_s: float
) -> None:
    """Make sure the video is embedded, waiting at most ``wait_s`` (progress goes to the client).

    Raises:
        ToolError: The pass is still running after ``wait_s`` ("call again in N s"), or it failed.
    """
    job = await run_engine(state, lambda: state.embed_job(target.path), f"reading {target.ref!r}")
    if job is None:
        return
    label = f"embedding the frames of {target.ref} (once per video)"
    last: tuple = ()
    job.attach()
    cancelled = False
    try:
        with anyio.move_on_after(wait_s):
            while not job.finished.is_set():
                if job.total and (job.done, job.total) != last:
                    last = (job.done, job.total)
                    with contextlib.suppress(Exception):  # progress is best effort
                        await ctx.report_progress(float(job.done), float(job.total), label)
                await anyio.sleep(0.1)
    except anyio.get_cancelled_exc_class():
        # notifications/cancelled, or the client went away: the last such waiter stops the pass
        cancelled = True
        raise
    finally:
        job.detach(cancelled=cancelled)
    if not job.finished.is_set():
        raise ToolError(
            f"{target.ref} is being prepared for search for the first time: {job.status_text()}. Call "
            "seek_video_frames again in a while (preview_video and video_info work meanwhile). To prepare "
            "videos ahead of time, run `videoseek index PATH`."
        )
    state.forget_job(job)
    if job.error is not None:
        raise tool_error(job.error, f"reading {target.ref!r}")
    if job.total:
        with contextlib.suppress(Exception):
            await ctx.report_progress(float(job.total), float(job.total), label)


async def resolve_video(state: ServerState, video: Any) -> ResolvedVideo:
    """Resolve a ``video`` argument in a worker thread (it may reload the index)."""
    try:
        target = await anyio.to_thread.run_sync(state.resolve_video, video)
    except Exception as exc:  # noqa: BLE001 - a readable isError result, never a bare SDK error
        raise tool_error(exc, f"resolving video {video!r}") from exc
    if not isinstance(target.path, Path):
        raise ToolError(
            f"video {target.ref!r} is a URL; URLs pass the server's allow-list, but the search engines read "
            "local files only. Download it under a media root and pass that path."
        )
    return target


async def encode_hits(
    state: ServerState, target: ResolvedVideo, hits: list[Any], max_side: int, budget: int
) -> tuple[list[Any], EncodedBatch, int]:
    """JPEG-encode the hits' images under the payload budget (decoding any that are missing).

    Returns:
        ``(kept hits, their encoded frames, number of frames left out)``. Frames are left out
        only when even the smallest size and quality exceed the budget (lowest score first,
        or every other frame for uniform sampling).
    """
    images = [h.image for h in hits]
    if any(im is None for im in images):
        images = await run_engine(
            state,
            lambda: state.temporal.frames(target.path, [h.timestamp for h in hits], max_side=max_side),
            f"decoding frames of {target.ref!r}",
        )
    batch = await anyio.to_thread.run_sync(lambda: encode_frames(images, max_side=max_side, budget=budget))
    keep = list(range(len(hits)))
    if batch.total_base64 > budget and len(keep) > 1:
        if all(h.score is not None for h in hits):
            order = sorted(keep, key=lambda i: hits[i].score)
        else:
            order = keep[1::2] + keep[0::2]
        sizes = {i: base64_len(len(batch.frames[i].data)) for i in keep}
        total = batch.total_base64
        for i in order:
            if total <= budget or len(keep) == 1:
                break
            keep.remove(i)
            total -= sizes[i]
        batch.frames = [batch.frames[i] for i in keep]
        batch.total_base64 = total
        batch.downscaled = True
        logger.warning(
            "left out %d frames to fit the %d-character payload budget", len(hits) - len(keep), budget
        )
    return [hits[i] for i in keep], batch, len(hits) - len(keep)


def selection_sent(selection: FrameSelection, hits: list[Any]) -> FrameSelection:
    """``selection`` with ``frames`` cut to the hits whose images are sent (pixels dropped)."""
    return selection.model_copy(update={"frames": [h.model_copy(update={"image": None}) for h in hits]})


def index_text(target: ResolvedVideo) -> str:
    if target.record is None:
        return "not in the corpus index"
    return f"in the corpus index as {target.record.video_id} ({target.record.status})"


def facts_text(target: ResolvedVideo, batch: Optional[EncodedBatch] = None) -> str:
    """The facts only the MCP surface has: the file, its index status, how the images were sent."""
    text = f"Video file {display_path(str(target.path))}, {index_text(target)}."
    if batch is not None and batch.frames:
        side = max(max(f.width, f.height) for f in batch.frames)
        text += (
            f" Images: JPEG quality {batch.quality}, longest side {side} px, "
            f"{batch.total_base64} base64 characters in all"
            + (" (reduced to fit the size limit)." if batch.downscaled else ".")
        )
    return text


def frames_content(
    timestamps: list[float], batch: EncodedBatch, labels: Optional[list[str]] = None
) -> list[Any]:
    content: list[Any] = []
    for i, (t, frame) in enumerate(zip(timestamps, batch.frames, strict=True)):
        label = f"Frame at {format_timestamp(t)}" + (f" ({labels[i]})" if labels else "")
        content.append(TextContent(type="text", text=label))
        content.append(ImageContent(type="image", data=frame.b64, mime_type="image/jpeg"))
    return content


def untrained_note(state: ServerState) -> list[TextContent]:
    if state.encoder_trained:
        return []
    return [
        TextContent(
            type="text",
            text=f"Warning: this server runs the untrained test encoder {state.encoder_name!r}; "
            "relevance scores and the choice of frames are arbitrary.",
        )
    ]


def check_moment_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ToolError(
            "query must describe what to look for (a non-empty string): who or what, doing what, where. "
            "To see evenly spaced frames of one video, use preview_video, or seek_video_frames with an "
            "empty query."
        )
    return query.strip()



def short(text: Optional[str], limit: int = 80) -> str:
    """``text`` for echoing back: at most ``limit`` characters, with ``...`` when cut."""
    text = text or ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_query(query: Any, limit: int) -> None:
    """Refuse a query longer than ``limit`` characters (echoing only its start).

    Raises:
        ToolError: Naming the length, the limit and ``VIDEOSEEK_MAX_QUERY_CHARS``.
    """
    if isinstance(query, str) and len(query) > limit:
        raise ToolError(
            f"query is {len(query)} characters long; this server accepts up to {limit} (limit "
            f"VIDEOSEEK_MAX_QUERY_CHARS). It starts {short(query, 40)!r}. Describe the moment in a "
            "sentence or two."
        )


def readable_validation_error(tool: str, exc: ValidationError) -> str:
    """One sentence per rejected argument: what was wrong and what is valid, no pydantic dump."""
    parts = []
    for err in exc.errors(include_url=False):
        name = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        value = err.get("input")
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        if len(shown) > 40:
            shown = shown[:37] + "..."
        kind = err.get("type", "")
        if kind == "missing":
            parts.append(f"{name} is required")
            continue
        if kind == "extra_forbidden":
            parts.append(f"{name} is not an argument of {tool}")
            continue
        msg = err.get("msg", "invalid").rstrip(".")
        msg = msg[0].lower() + msg[1:] if msg else "invalid"
        parts.append(f"{name} = {shown}: {msg}")
    return f"invalid arguments for {tool}: " + "; ".join(parts) + ". See the tool's input schema for valid values."

