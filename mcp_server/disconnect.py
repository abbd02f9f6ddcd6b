"""Cancel a tool call whose HTTP client went away (an ASGI middleware for streamable HTTP).

Over stdio, and over HTTP when the client says so, a call ends with the client's
``notifications/cancelled``; the SDK then cancels the call's task, and videoseek's embedding
queue drops or stops the pass the call was waiting for (:mod:`mcp_server.limits`). A client that
simply disconnects (killed, timed out without the notification, network gone) sends nothing, and
the SDK's stateful streamable-HTTP transport keeps the call running: measured, a first embedding
went on for the whole 8 s it was watched after its only caller had closed the connection. Without
an event store (videoseek configures none) a dropped response stream cannot be resumed either, so
the work is lost anyway.

:class:`CancelOnDisconnectMiddleware` closes that gap with the SDK's own path: it reads each
POST's JSON-RPC body, and when the connection drops before the response is complete it posts
``notifications/cancelled`` for every request of that body into the same session, as the client
would have. Requests without an ``mcp-session-id`` (initialisation, stateless servers) pass
through untouched.

- :class:`CancelOnDisconnectMiddleware` - the middleware.

Usage::

    app = CancelOnDisconnectMiddleware(server.streamable_http_app(host=host))
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["CancelOnDisconnectMiddleware"]

logger = logging.getLogger("videoseek.mcp")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Request headers carried over into the synthetic cancellation (the session, and anything the app checks).
_KEEP = {b"mcp-session-id", b"mcp-protocol-version", b"host", b"origin", b"authorization"}


def _request_ids(body: bytes) -> list[Any]:
    """The ids of the JSON-RPC *requests* (``method`` and ``id``) in a POST body; ``[]`` if none or unparsable."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return []
    messages = data if isinstance(data, list) else [data]
    return [m["id"] for m in messages if isinstance(m, dict) and "method" in m and m.get("id") is not None]


class CancelOnDisconnectMiddleware:
    """Post ``notifications/cancelled`` for a POST's requests when its client disconnects mid-response.

    Args:
        app: The streamable-HTTP ASGI app (``server.streamable_http_app(...)``).
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if b"mcp-session-id" not in headers:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:  # the whole body first: JSON-RPC requests are small
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before its request was complete: nothing reached the server
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        ids = _request_ids(body)
        state = {"replayed": False, "complete": False, "cancelled": False}

        async def replay() -> Message:
            if not state["replayed"]:
                state["replayed"] = True
                return {"type": "http.request", "body": body, "more_body": False}
            message = await receive()
            if message["type"] == "http.disconnect" and ids and not state["complete"] and not state["cancelled"]:
                state["cancelled"] = True
                self._cancel_later(scope, ids)
            return message

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                state["complete"] = True
            await send(message)

        await self.app(scope, replay, watch)

    def _cancel_later(self, scope: Scope, ids: list[Any]) -> None:
        """Post the cancellations as a task of their own: the caller is the dropped request's disconnect listener."""
        task = asyncio.get_running_loop().create_task(self._cancel(scope, ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel(self, scope: Scope, ids: list[Any]) -> None:
        kept = [(k, v) for k, v in scope.get("headers") or [] if k.lower() in _KEEP]
        for request_id in ids:
            await self._cancel_one(scope, kept, request_id)

    async def _cancel_one(self, scope: Scope, kept: list[tuple[bytes, bytes]], request_id: Any) -> None:
        """Post one ``notifications/cancelled`` into the session; its response (202) is discarded."""
        body = json.dumps({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": "the client disconnected"},
        }).encode()
        headers = [*kept, (b"content-type", b"application/json"), (b"accept", b"application/json, text/event-stream"),
                   (b"content-length", str(len(body)).encode())]
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}  # nobody waits for the notification's 202

        async def discard(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status", 200) >= 400:
                logger.warning("cancelling request %r of a disconnected client: HTTP %s", request_id, message["status"])

        logger.info("client disconnected during request %r: cancelling it", request_id)
        try:
            await self.app({**scope, "headers": headers}, receive, discard)
        except Exception:  # a failed cancellation must not take the server down
            logger.exception("cancelling request %r of a disconnected client failed", request_id)
