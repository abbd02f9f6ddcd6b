"""Bearer-token check for the streamable-HTTP transport (an ASGI middleware).

The MCP SDK's own auth (``AuthSettings`` + ``TokenVerifier``) is an OAuth resource server: it
needs an authorization server's issuer URL and advertises OAuth metadata that clients then try
to follow. videoseek needs a shared secret for one operator, so it wraps the SDK's Starlette
app instead: every HTTP request must carry ``Authorization: Bearer <VIDEOSEEK_MCP_TOKEN>``
(compared in constant time), else it gets ``401`` with a ``WWW-Authenticate: Bearer`` header and
never reaches the MCP session manager.

- :class:`BearerTokenMiddleware` - the middleware.
- :func:`is_loopback` - whether a bind address only accepts connections from this machine.

Usage::

    app = BearerTokenMiddleware(server.streamable_http_app(host=host), token="s3cret")
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any, Awaitable, Callable

__all__ = ["BearerTokenMiddleware", "is_loopback"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerTokenMiddleware:
    """Refuse HTTP requests without ``Authorization: Bearer <token>`` (401).

    Args:
        app: The ASGI app to protect.
        token: The shared secret (non-empty).

    Raises:
        ValueError: An empty token.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], token: str):
        if not token:
            raise ValueError("the bearer token must not be empty")
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":  # lifespan events pass through
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                given = value
                break
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"error": "unauthorized", "error_description": "send Authorization: Bearer <VIDEOSEEK_MCP_TOKEN>"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="videoseek"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
