"""The one structured output the MCP server adds to the shared models: a page of ``list_videos``.

Every other tool returns a model of :mod:`agent_tools.types` as its structured output (the
same object the CLI's ``--json``, the LangChain artifact and the graph state carry):

- ``seek_video_frames``, ``preview_video`` - :class:`~agent_tools.types.FrameSelection`;
- ``search_moments`` - :class:`~agent_tools.types.MomentSearchResult`;
- ``video_info`` - :class:`~agent_tools.types.VideoInfo`.

``list_videos`` pages through the index, so its rows, :class:`~agent_tools.types.VideoRecord`,
travel in :class:`VideoPage`. What only the MCP surface knows (JPEG size and quality, whether
the index holds a video, frames left out to fit the payload) goes in the text content.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field

from agent_tools.types import VideoRecord

__all__ = ["VideoPage"]


class VideoPage(BaseModel):
    """A page of the corpus index's videos, sorted by path."""

    total: int = Field(description="Videos matching the filter, over all pages.")
    offset: int = Field(description="Videos skipped before this page.")
    next_offset: Optional[int] = Field(None, description="Offset of the next page, if there is one.")
    videos: list[VideoRecord] = Field(description="The videos of this page.")
