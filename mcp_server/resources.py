"""The MCP resources: ``videoseek://videos``, ``videoseek://videos/{video_id}``, ``videoseek://index/status``.

:func:`register_resources` adds them to an :class:`MCPServer`. A catalog found damaged while
serving makes the index unavailable from then on; the status resource says so, with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

from agent_tools.config import Settings
from agent_tools.errors import IndexCorruptError

from .state import INDEX_HINT, ServerState, StateLoader

__all__ = ["register_resources"]


def register_resources(server: MCPServer, settings: Settings, loader: StateLoader) -> None:
    """Add the three resources to ``server``; they reach the state through ``loader``."""
    max_frames = int(settings.max_frames)

    # ------------------------------------------------------------------ resources
    # Static resources get no Context in the SDK, so they reach the state through `loader`.
    async def read_resource(build: Callable[[ServerState], str]) -> str:
        """``build(state)`` in a worker thread, on the loaded state with the index refreshed."""
        try:
            state = await loader.get()
        except ToolError as exc:
            raise ResourceError(str(exc)) from exc

        def run() -> str:
            state.refresh_index()
            try:
                return build(state)
            except IndexCorruptError as exc:  # damaged since it was opened: unavailable from now on
                state.index_damaged(exc)
                return build(state)
            except ToolError as exc:
                raise ResourceError(str(exc)) from exc

        return await anyio.to_thread.run_sync(run)

    @server.resource(
        "videoseek://videos",
        name="videos",
        title="Indexed videos",
        description="Every video in the corpus index (id, path, duration, status), as JSON.",
        mime_type="application/json",
    )
    async def videos_resource() -> str:
        def build(state: ServerState) -> str:
            if state.index is None:
                return json.dumps(
                    {"available": False, "message": f"{state.index_error}; {INDEX_HINT}", "videos": []},
                    indent=1,
                )
            videos = [r.model_dump(mode="json") for r in state.index.list_videos()]
            return json.dumps({"available": True, "videos": videos}, indent=1)

        return await read_resource(build)

    @server.resource(
        "videoseek://videos/{video_id}",
        name="video",
        title="Video metadata",
        description="Catalog record of one indexed video (path, duration, fps, status, segments), as JSON.",
        mime_type="application/json",
    )
    async def video_resource(video_id: str) -> str:
        def build(state: ServerState) -> str:
            if state.index is None:
                raise ResourceError(f"{state.index_error}; {INDEX_HINT}")
            record = state.lookup_indexed(video_id)
            if record is None or record.video_id != video_id:
                raise ResourceError(f"no indexed video with id {video_id!r}; see videoseek://videos")
            return json.dumps(record.model_dump(mode="json"), indent=1)

        return await read_resource(build)

    @server.resource(
        "videoseek://index/status",
        name="index-status",
        title="Index status",
        description="State of the corpus index, the encoder and the media roots, as JSON.",
        mime_type="application/json",
    )
    async def index_status_resource() -> str:
        def build(state: ServerState) -> str:
            status: dict[str, Any] = {
                "index_dir": str(state.index_dir),
                "available": state.index is not None,
                "encoder": state.encoder_name,
                "encoder_trained": state.encoder_trained,
                "media_roots": [str(r) for r in state.resolver.roots],
                "allow_urls": state.resolver.allow_urls,
                "max_frames": max_frames,
                "limits": {
                    "max_query_chars": state.settings.max_query_chars,
                    "max_video_duration_s": state.settings.max_video_duration_s,
                    "max_video_pixels": state.settings.max_video_pixels,
                    "max_embed_queue": state.settings.max_embed_queue,
                },
            }
            if state.index is None:
                status["message"] = f"{state.index_error}; {INDEX_HINT}"
            else:
                status["index"] = state.index.status().model_dump(mode="json")
            return json.dumps(status, indent=1)

        return await read_resource(build)
