"""The ``videoseek-mcp`` command line: transports, flags, and the guard on remote binds.

- :func:`main` - entry point (stdio by default; ``--transport streamable-http``).
- :func:`parse_args` - the flags.
- :func:`http_app` / :func:`serve_http` - streamable HTTP: a call whose client disconnects is cancelled
  (:class:`~mcp_server.disconnect.CancelOnDisconnectMiddleware`), and with a token every request
  needs it (:class:`~mcp_server.auth.BearerTokenMiddleware`).
- :func:`serve_http_with_token` - :func:`serve_http` with a token required.

A ``--host`` other than loopback is refused unless ``--allow-remote`` is given *and*
``VIDEOSEEK_MCP_TOKEN`` is set; with a token (on any host) every HTTP request must carry
``Authorization: Bearer <token>``, else it gets 401.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

from mcp.server.mcpserver import MCPServer

from agent_tools.config import get_settings

from .auth import BearerTokenMiddleware, is_loopback
from .disconnect import CancelOnDisconnectMiddleware

__all__ = ["main", "parse_args", "http_app", "serve_http", "serve_http_with_token", "version", "DEFAULT_EMBED_WAIT_S"]

logger = logging.getLogger("videoseek.mcp")

DEFAULT_EMBED_WAIT_S = 40.0


def version() -> str:
    """The installed videoseek version (``0`` when not installed)."""
    try:
        from importlib.metadata import version as _pkg_version

        return _pkg_version("videoseek")
    except Exception:  # noqa: BLE001
        return "0"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="videoseek-mcp",
        description="videoseek MCP server: temporal and corpus video search tools for MCP hosts. "
        "Configuration comes from VIDEOSEEK_* environment variables (VIDEOSEEK_MEDIA_ROOTS, "
        "VIDEOSEEK_ENCODER, VIDEOSEEK_INDEX_DIR, ...).",
    )
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument(
        "--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1: this machine only)."
    )
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765).")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="Allow a --host other than loopback (then VIDEOSEEK_MCP_TOKEN must be set: every request "
        "must send 'Authorization: Bearer <token>').",
    )
    parser.add_argument(
        "--media-root",
        action="append",
        default=None,
        metavar="DIR",
        help="Folder videos may be read from (repeatable; overrides VIDEOSEEK_MEDIA_ROOTS).",
    )
    parser.add_argument(
        "--encoder", default=None, help="Encoder registry name (overrides VIDEOSEEK_ENCODER)."
    )
    parser.add_argument(
        "--index-dir", default=None, help="Corpus index folder (overrides VIDEOSEEK_INDEX_DIR)."
    )
    parser.add_argument(
        "--embed-wait",
        type=float,
        default=DEFAULT_EMBED_WAIT_S,
        metavar="SECONDS",
        help="How long a search waits for a new video's one-time embedding before answering "
        f"'call again' (default {DEFAULT_EMBED_WAIT_S:g}; keep it under the host's tool timeout).",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("VIDEOSEEK_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point ``videoseek-mcp`` (also ``python -m mcp_server``).

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides: dict[str, Any] = {"encoder": args.encoder, "index_dir": args.index_dir}
    if args.media_root:
        overrides["media_roots"] = [Path(p) for p in args.media_root]
    try:
        settings = get_settings(**overrides)
    except Exception as exc:  # noqa: BLE001 - configuration errors are one line on stderr
        errors = getattr(exc, "errors", None)
        if callable(errors):
            detail = "; ".join(
                f"VIDEOSEEK_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in errors()
            )
        else:
            detail = str(exc)
        print(f"videoseek-mcp: invalid configuration: {detail}", file=sys.stderr)
        raise SystemExit(2) from exc
    token = settings.mcp_token.get_secret_value() if settings.mcp_token is not None else ""
    if args.transport == "streamable-http" and not is_loopback(args.host):
        if not args.allow_remote:
            _refuse(
                f"--host {args.host} makes the server reachable from other machines; pass --allow-remote "
                "as well (and set VIDEOSEEK_MCP_TOKEN), or keep the default --host 127.0.0.1"
            )
        if not token:
            _refuse(
                f"--host {args.host} --allow-remote needs a bearer token: set VIDEOSEEK_MCP_TOKEN to a long "
                "random secret; clients then send 'Authorization: Bearer <token>'"
            )
        logger.warning("binding to %s: reachable from other machines; every request needs the bearer token", args.host)
    from .server import build_server

    server = build_server(settings, embed_wait_s=args.embed_wait)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        serve_http(server, args.host, args.port, token=token, log_level=args.log_level)


def _refuse(message: str) -> None:
    print(f"videoseek-mcp: {message}", file=sys.stderr)
    raise SystemExit(2)


def http_app(server: MCPServer, host: str, token: str = "") -> Any:
    """The streamable-HTTP ASGI app: the SDK's, a call cancelled when its client disconnects, the token checked first.

    Args:
        server: The MCP server.
        host: The bind address (the SDK derives its DNS-rebinding protection from it).
        token: If set, every request must carry ``Authorization: Bearer <token>``.
    """
    app = CancelOnDisconnectMiddleware(server.streamable_http_app(host=host))
    return BearerTokenMiddleware(app, token) if token else app


def serve_http(server: MCPServer, host: str, port: int, *, token: str = "", log_level: str = "INFO") -> None:
    """Serve streamable HTTP (:func:`http_app`) with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(http_app(server, host, token), host=host, port=port, log_level=log_level.lower())


def serve_http_with_token(server: MCPServer, host: str, port: int, token: str, log_level: str = "INFO") -> None:
    """Serve streamable HTTP where every request must carry ``Authorization: Bearer <token>``."""
    if not token:
        raise ValueError("serve_http_with_token needs a non-empty token; use serve_http for a loopback server")
    serve_http(server, host, port, token=token, log_level=log_level)
