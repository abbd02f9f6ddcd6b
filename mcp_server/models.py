"""Structured outputs of the MCP tools (each becomes a tool's ``outputSchema``).

The images and a readable summary travel as MCP content; these models travel beside them
as ``structuredContent``, so a host's code can read timestamps and scores without parsing
text. They mirror :mod:`agent_tools.types` but are flat and JSON-only (no PIL images).

- :class:`ImageEncoding` - size and JPEG quality the frames were sent at.
- :class:`SeekFramesOutput` - ``seek_video_frames``.
- :class:`PreviewOutput` - ``preview_video``.
- :class:`VideoInfoOutput` - ``video_info``.
- :class:`VideoSummary`, :class:`ListVideosOutput` - ``list_videos``.
- :class:`MomentOut`, :class:`SearchMomentsOutput` - ``search_moments``.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field

__all__ = [
    "ImageEncoding",
    "SeekFramesOutput",
    "PreviewOutput",
    "VideoInfoOutput",
    "VideoSummary",
    "ListVideosOutput",
    "MomentOut",
    "SearchMomentsOutput",
]


class ImageEncoding(BaseModel):
    """How the frame images in the content were encoded."""

    format: str = Field("jpeg", description="Image format of every frame.")
    max_side: int = Field(description="Longest side of the frames as sent, in pixels.")
    quality: int = Field(description="JPEG quality (1-95).")
    total_base64_chars: int = Field(description="Base64 size of all images together.")
    reduced: bool = Field(description="True when size or quality was lowered to fit the payload budget.")


class _VideoRef(BaseModel):
    video: str = Field(description="The video argument as given (index id or path).")
    video_id: Optional[str] = Field(None, description="Index id of the video, when it is indexed.")
    path: str = Field(description="Resolved file the frames came from.")


class SeekFramesOutput(_VideoRef):
    """Frames chosen inside one video for a query (TimeSearch-R's ``seek_video_frames``)."""

    query: str
    start_time: float = Field(description="Effective window start, in seconds.")
    end_time: float = Field(description="Effective window end, in seconds (clamped to the video).")
    duration: float = Field(description="Duration of the whole video, in seconds.")
    timestamps: list[float] = Field(description="Timestamps of the returned frames, in time order.")
    scores: list[Optional[float]] = Field(description="Cosine similarity of each frame to the query.")
    relevance: list[Optional[float]] = Field(
        description="Scores min-max normalised over the window's candidates, in [0, 1]."
    )
    num_candidates: int = Field(description="Sampled frames inside the window that were scored.")
    method: str = Field(description="'dpp' (relevant and diverse) or 'uniform'.")
    encoder: str
    encoder_trained: bool = Field(description="False for untrained test encoders: scores are meaningless.")
    sample_fps: float = Field(description="Rate at which the video's frames were embedded.")
    images: ImageEncoding


class PreviewOutput(_VideoRef):
    """Uniformly spaced frames of one video."""

    duration: float = Field(description="Duration of the whole video, in seconds.")
    timestamps: list[float] = Field(description="Timestamps of the returned frames, in time order.")
    fps: float
    width: int
    height: int
    images: ImageEncoding


class VideoInfoOutput(_VideoRef):
    """Container facts of one video, plus its index status."""

    duration: float
    fps: float
    frame_count: int
    width: int
    height: int
    codec: Optional[str] = None
    indexed: bool = Field(description="Whether the corpus index holds this video.")
    index_status: Optional[str] = Field(None, description="Status of the video in the index.")


class VideoSummary(BaseModel):
    """One row of ``list_videos``."""

    video_id: str
    path: str
    duration: Optional[float] = None
    status: Optional[str] = None


class ListVideosOutput(BaseModel):
    """A page of the indexed videos."""

    total: int = Field(description="Videos matching the filter, over all pages.")
    offset: int
    videos: list[VideoSummary]
    next_offset: Optional[int] = Field(None, description="Offset of the next page, if there is one.")


class MomentOut(BaseModel):
    """One ranked moment."""

    rank: int
    video_id: str
    path: str
    start: float
    end: float
    score: float
    peak_time: Optional[float] = None


class SearchMomentsOutput(BaseModel):
    """Ranked moments across the indexed videos."""

    query: str
    moments: list[MomentOut]
    num_videos_searched: int
    encoder: str
    encoder_trained: bool
