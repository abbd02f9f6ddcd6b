"""videoseek's MCP server: the search engines as tools for Claude Desktop, Claude Code and any MCP host.

- :mod:`mcp_server.server` - :func:`build_server` and the ``videoseek-mcp`` entry point :func:`main`.
- :mod:`mcp_server.state` - models, index and ``video`` resolution shared by the tools.
- :mod:`mcp_server.tools` / :mod:`mcp_server.resources` - the five tools and three resources.
- :mod:`mcp_server.calls` - helpers the tools share (worker threads, errors, payloads).
- :mod:`mcp_server.limits` - video limits, the first-embedding queue, cancellation.
- :mod:`mcp_server.auth` - bearer token for the HTTP transport; :mod:`mcp_server.disconnect` - an
  HTTP call whose client disconnects is cancelled; :mod:`mcp_server.cli` - the command line.
- :mod:`mcp_server.security` - media-root allow-list for video paths (:class:`MediaResolver`).
- :mod:`mcp_server.media` - JPEG encoding of frames under a payload budget.
- :mod:`mcp_server.models` - :class:`VideoPage`, the page ``list_videos`` returns; the other tools'
  structured outputs are the shared models of :mod:`agent_tools.types`.

Usage::

    videoseek-mcp                       # or: python -m mcp_server
"""

from .security import MediaResolver
from .server import build_server, main

__all__ = ["build_server", "main", "MediaResolver"]
