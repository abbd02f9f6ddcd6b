"""The videoseek MCP server: temporal and corpus video search as MCP tools.

The host's model is the search policy: it calls the tools below, looks at the frames they
return and decides where to look next. Built on the ``mcp`` 2.x SDK (:class:`MCPServer`).

Tools (names and argument names are a contract). Each returns readable content for the model
and, as ``structuredContent``, the typed result every videoseek surface shares (the CLI's
``--json``, the LangChain artifact and the graph state carry the same models):

- ``seek_video_frames(video, query, start_time?, end_time?, num_frames?)`` - the frames of one
  video that best match a query inside a time window (TimeSearch-R's tool), as JPEG images
  each preceded by its timestamp; an empty or blank query samples the window uniformly, as
  :meth:`agent_tools.temporal.TemporalSearcher.seek` does. Structured output:
  :class:`~agent_tools.types.FrameSelection`.
- ``preview_video(video, num_frames?)`` - uniformly spaced frames and the duration
  (:class:`~agent_tools.types.FrameSelection`).
- ``search_moments(query, top_k?, video?)`` - ranked moments from the corpus index
  (:class:`~agent_tools.types.MomentSearchResult`); an empty query is an error.
- ``video_info(video)`` - container facts (:class:`~agent_tools.types.VideoInfo`); whether the
  index holds the video is said in the text.
- ``list_videos(status?, limit?, offset?)`` - a page of the indexed videos
  (:class:`~mcp_server.models.VideoPage` of :class:`~agent_tools.types.VideoRecord`).
- ``search_transcript(video, query, top_k?, start_time?, end_time?)`` / ``get_transcript(video,
  start_time?, end_time?)`` - where / what is said in one video (:mod:`mcp_server.speech`);
  ``search_moments`` also ranks what is said when the index has a speech pass.

A :class:`~agent_tools.types.FrameSelection`'s ``frames`` are exactly the frames whose images
were sent, in time order, and its ``video`` is the index id when the index holds the video,
else the ``video`` argument as given. What only this surface knows (JPEG size and quality,
the file and its index status, frames left out to fit the payload) is in the text content.

Resources: ``videoseek://videos`` (the index's videos), ``videoseek://videos/{video_id}``
(one video's metadata), ``videoseek://videos/{video_id}/transcript`` (what is said in it) and
``videoseek://index/status`` (index, encoder and media roots).

Modules (split along the seams of this one): :mod:`mcp_server.state` (loading, the index,
resolving ``video``), :mod:`mcp_server.limits` (video limits, the FIFO embedding queue,
cancellation), :mod:`mcp_server.calls` (helpers the tools share), :mod:`mcp_server.tools`,
:mod:`mcp_server.resources`, :mod:`mcp_server.auth` (bearer token for HTTP) and
:mod:`mcp_server.cli` (``videoseek-mcp``). This module builds the server.

Design:

- :class:`ServerState` holds the encoder, the frame-embedding store, the temporal searcher
  and the corpus index. The lifespan starts loading it (once per server object, in the
  background, so the host's handshake and tool listing do not wait for torch); calls wait
  for it, and later calls and connections reuse the loaded models. If loading fails, the
  server keeps running and every tool call fails with the reason (an ``isError`` result).
- ``video`` is an index id or a path; either must resolve, at call time, under a media root
  (:mod:`mcp_server.security`).
- Engine calls run in worker threads (two at a time). A video's first search embeds its
  frames once (:class:`~mcp_server.limits.EmbedJob`, queued first come first served, one pass
  at a time, refused over the duration / frame-size / queue limits); the call waits up to
  ``embed_wait_s`` (40 s) with progress notifications, then answers "call again in N s" while
  the pass goes on, so no call outlives a host's ~60 s timeout. A pass whose every caller was
  cancelled (or disconnected) is cancelled. Indexing a corpus is the CLI's job.
- Bad input raises :class:`ToolError` with a message that says what is valid; the SDK turns
  it into an ``isError`` result and the server keeps serving. Argument type errors are one
  readable sentence (:class:`VideoseekMCPServer`), not pydantic's dump.
- Logging goes to stderr only: on stdio, stdout is the protocol wire.

Usage::

    videoseek-mcp                                    # stdio (Claude Desktop, Claude Code)
    videoseek-mcp --transport streamable-http --port 8765   # http://127.0.0.1:8765/mcp
    python -m mcp_server --help

    server = build_server(get_settings(encoder="tiny-untrained"))   # in tests
    async with Client(server) as client: ...
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Optional

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from agent_tools.config import Settings, get_settings

from .calls import readable_validation_error
from .cli import DEFAULT_EMBED_WAIT_S, main, version
from .limits import EmbedJob, EmbedQueue
from .media import DEFAULT_BUDGET
from .resources import register_resources
from .speech import register_speech
from .state import ResolvedVideo, ServerState, StateLoader, load_state
from .tools import register_tools

__all__ = [
    "build_server",
    "main",
    "ServerState",
    "StateLoader",
    "EmbedJob",
    "EmbedQueue",
    "ResolvedVideo",
    "load_state",
    "VideoseekMCPServer",
    "SERVER_NAME",
]

logger = logging.getLogger("videoseek.mcp")

SERVER_NAME = "videoseek"
DEFAULT_IMAGE_MAX_SIDE = 768

INSTRUCTIONS = """\
videoseek searches long videos for you. Times are seconds from the start of a video.
- Across many indexed videos: search_moments(query) returns ranked (video, start, end) moments;
  list_videos shows what is indexed.
- What is said: search_transcript(video, query) finds where something is said in one video;
  get_transcript(video, start_time, end_time) reads it.
- Inside one video: preview_video(video) for an overview, then seek_video_frames(video, query,
  start_time, end_time) to look closer; narrow the window around promising timestamps and search
  again until the frames answer the question (an empty query gives evenly spaced frames of the
  window). Base answers on what the frames show.
- `video` is an id from list_videos/search_moments or a file path under the server's media roots.
"""


class VideoseekMCPServer(MCPServer):
    """:class:`MCPServer` whose argument-validation errors are one readable sentence.

    The SDK reports a rejected argument as pydantic's multi-line text with a documentation URL;
    this names each bad argument, the value given and what is valid.
    """

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Optional[Context] = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(readable_validation_error(name, exc.__cause__)) from exc.__cause__
            raise


def build_server(
    settings: Optional[Settings] = None,
    *,
    encoder: Any = None,
    load_index: bool = True,
    image_max_side: int = DEFAULT_IMAGE_MAX_SIDE,
    image_budget: int = DEFAULT_BUDGET,
    embed_wait_s: float = DEFAULT_EMBED_WAIT_S,
    state: Optional[ServerState] = None,
) -> MCPServer:
    """Build the videoseek MCP server (models load when the first client connects).

    Args:
        settings: Configuration; default: read from ``VIDEOSEEK_*`` environment variables.
        encoder: A loaded encoder to use instead of loading ``settings.encoder``.
        load_index: Open the corpus index at ``settings.index_dir`` when it exists.
        image_max_side: Longest side of returned frames before any budget downscaling.
        image_budget: Base64 characters allowed for the images of one result (~1 MB hosts' limit).
        embed_wait_s: How long a ``seek_video_frames`` call waits for a video's first embedding
            pass before answering "call again" (the pass goes on in the background). Keep it
            under the host's tool timeout (Claude Desktop: about 60 s).
        state: A ready :class:`ServerState` (skips loading; for embedding in other apps).

    Returns:
        The :class:`MCPServer`; run it with ``.run("stdio")`` or connect ``mcp.Client(server)``.
    """
    settings = settings or get_settings()
    loader = (
        StateLoader.ready(state)
        if state is not None
        else StateLoader(lambda: load_state(settings, encoder=encoder, load_index=load_index))
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[StateLoader]:
        loader.start()  # first connection: load in the background; later ones reuse the state
        yield loader

    server = VideoseekMCPServer(
        SERVER_NAME,
        title="videoseek: long-video search",
        instructions=INSTRUCTIONS,
        version=version(),
        lifespan=lifespan,
    )
    register_tools(
        server, settings, image_max_side=image_max_side, image_budget=image_budget, embed_wait_s=embed_wait_s
    )
    register_resources(server, settings, loader)
    register_speech(server, settings, loader, wait_s=embed_wait_s)
    return server


if __name__ == "__main__":  # pragma: no cover
    main()
