"""Typed results shared by every surface (library, CLI ``--json``, MCP, LangChain, graphs).

One model per answer, so the MCP structured output, the LangChain artifact, the
graph state and the CLI's JSON are the same object:

- :class:`VideoInfo` - container facts of one video file.
- :class:`FrameHit` - one chosen frame: exact timestamp and scores (pixels only on request,
  never serialised).
- :class:`FrameSelection` - the answer of a temporal search inside one video.
- :class:`Moment` / :class:`MomentSearchResult` - the answer of a corpus search.
- :class:`VideoRecord` / :class:`IndexStatus` / :class:`BuildReport` - the corpus index's catalog
  row, its summary, and the outcome of one ``videoseek index`` run.
- :class:`TranscriptWord` / :class:`TranscriptSegment` / :class:`Transcript` - what is said in one
  video, with segment and word times (from ASR or from subtitles).

Timestamps are seconds from the start of the video, as floats.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "VideoInfo",
    "FrameHit",
    "FrameSelection",
    "Moment",
    "MomentSearchResult",
    "QueryKind",
    "VideoStatus",
    "VideoRecord",
    "IndexStatus",
    "BuildReport",
    "MomentSource",
    "SpeechBuildReport",
    "TranscriptWord",
    "TranscriptSegment",
    "Transcript",
]

QueryKind = Literal["text", "image", "vector", "none"]
MomentSource = Literal["visual", "speech", "both"]


class VideoInfo(BaseModel):
    """Container facts of one video file."""

    path: str = Field(description="Absolute path of the file.")
    duration: float = Field(description="Duration in seconds.")
    fps: float = Field(description="Average frame rate of the video stream.")
    frame_count: int = Field(description="Number of frames in the video stream.")
    width: int
    height: int
    codec: Optional[str] = None
    backend: Optional[str] = Field(None, description="Decoder that read the metadata.")


class FrameHit(BaseModel):
    """One frame chosen by a search."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    timestamp: float = Field(description="Presentation time of the decoded frame, in seconds.")
    score: Optional[float] = Field(
        None, description="Cosine similarity of the frame to the query (None for uniform sampling)."
    )
    relevance: Optional[float] = Field(
        None, description="Score min-max normalised over the window's candidates, in [0, 1]."
    )
    sample_index: int = Field(description="Index of the frame in the video's embedding store.")
    image: Any = Field(
        None,
        exclude=True,
        repr=False,
        description="PIL image of the frame, only when requested; never serialised.",
    )


class FrameSelection(BaseModel):
    """The answer of a temporal search: which frames of one video match the query."""

    video: str = Field(description="Video id or path the search ran on.")
    query: Optional[str] = Field(None, description="Text query, or a label for an image query.")
    query_kind: QueryKind = "text"
    start_time: float = Field(description="Effective window start, in seconds.")
    end_time: float = Field(description="Effective window end, in seconds (clamped to the video).")
    duration: float = Field(description="Duration of the whole video, in seconds.")
    num_candidates: int = Field(description="Sampled frames inside the window that were scored.")
    method: Literal["dpp", "uniform"] = "dpp"
    encoder: str = Field(description="Registry name of the encoder used.")
    encoder_trained: bool = Field(description="False for untrained test encoders.")
    sample_fps: float = Field(description="Rate at which the video's frames were embedded.")
    frames: list[FrameHit] = Field(default_factory=list, description="Chosen frames in time order.")

    @property
    def timestamps(self) -> list[float]:
        """Timestamps of the chosen frames, in time order."""
        return [f.timestamp for f in self.frames]

    @property
    def images(self) -> list[Any]:
        """The frames' PIL images (empty unless requested)."""
        return [f.image for f in self.frames if f.image is not None]


class Moment(BaseModel):
    """A span of one video that matches a corpus query."""

    video_id: str = Field(description="Stable id of the video in the index.")
    path: str = Field(description="Path of the video file.")
    start: float = Field(description="Moment start, in seconds.")
    end: float = Field(description="Moment end, in seconds.")
    score: float = Field(description="Similarity of the moment to the query (higher is better).")
    video_score: Optional[float] = Field(None, description="Score of the video in the retrieval step.")
    peak_time: Optional[float] = Field(None, description="Time of the best-matching frame.")
    source: MomentSource = Field(
        "visual", description="What matched: the frames ('visual'), what is said ('speech'), or both."
    )
    text: Optional[str] = Field(None, description="The transcript span quoted, for speech moments.")


class MomentSearchResult(BaseModel):
    """The answer of a corpus search: ranked moments across the indexed videos."""

    query: Optional[str] = None
    query_kind: QueryKind = "text"
    encoder: str
    encoder_trained: bool
    moments: list[Moment] = Field(default_factory=list)
    num_videos_searched: int = 0


VideoStatus = Literal["pending", "indexed", "failed"]


class VideoRecord(BaseModel):
    """One video of a corpus index (a row of its catalog)."""

    video_id: str = Field(description="Short stable id (first 12 hex digits of the content fingerprint).")
    path: str = Field(description="Absolute path of the file when it was indexed.")
    fingerprint: Optional[str] = Field(None, description="Content fingerprint of the indexed file.")
    size_bytes: Optional[int] = None
    duration: Optional[float] = Field(None, description="Duration in seconds.")
    fps: Optional[float] = Field(None, description="Frame rate of the video stream.")
    status: VideoStatus = Field(description="pending (not yet indexed), indexed, or failed (see error).")
    error: Optional[str] = Field(None, description="Why indexing failed, for status 'failed'.")
    num_frames: int = Field(0, description="Embedded frames (sampled at the index's sample_fps).")
    num_segments: int = Field(0, description="Segment vectors of this video in the vector index.")
    updated_at: Optional[float] = Field(None, description="Unix time of the last change of this row.")


class IndexStatus(BaseModel):
    """Summary of a corpus index (``videoseek index --status``)."""

    index_dir: str
    encoder: Optional[str] = Field(None, description="Encoder the index was built with.")
    dim: Optional[int] = Field(None, description="Vector width.")
    sample_fps: Optional[float] = None
    kind: str = Field(description="Requested index kind: auto, flat, ivf or hnsw.")
    main_kind: Optional[str] = Field(None, description="Kind of the main FAISS index actually built.")
    search_param: Optional[int] = Field(None, description="nprobe (IVF) or efSearch (HNSW).")
    num_videos: int = 0
    num_indexed: int = 0
    num_failed: int = 0
    num_pending: int = 0
    num_vectors: int = Field(0, description="Segment vectors in the catalog (indexed videos).")
    num_vectors_main: int = 0
    num_vectors_delta: int = Field(0, description="Recent additions not yet merged into the main index.")
    total_duration: float = Field(0.0, description="Seconds of indexed video.")
    disk_bytes: int = Field(0, description="Size of the index directory.")
    failed: list[VideoRecord] = Field(default_factory=list, description="Failed videos with their reasons.")


class SpeechBuildReport(BaseModel):
    """Outcome of the speech pass of one ``videoseek index`` run."""

    transcribed: list[str] = Field(default_factory=list, description="Video ids transcribed (or subtitles read).")
    unchanged: int = 0
    without_audio: list[str] = Field(default_factory=list, description="Video ids with no audio stream.")
    removed: int = Field(0, description="Videos dropped because the catalog no longer lists them.")
    failed: dict[str, str] = Field(default_factory=dict, description="Video id -> why its audio failed.")
    num_passages: int = Field(0, description="Sentences indexed in this run.")
    seconds_audio: float = Field(0.0, description="Seconds of audio transcribed in this run.")
    seconds: float = 0.0


class BuildReport(BaseModel):
    """Outcome of one incremental build (``CorpusIndex.update``)."""

    added: list[str] = Field(default_factory=list, description="Paths indexed for the first time.")
    changed: list[str] = Field(default_factory=list, description="Paths whose content changed, re-indexed.")
    removed: list[str] = Field(default_factory=list, description="Paths gone from disk, dropped.")
    unchanged: int = Field(0, description="Paths already indexed with the same fingerprint.")
    failed: dict[str, str] = Field(default_factory=dict, description="Path -> reason, for files that failed.")
    interrupted: bool = Field(False, description="True if the run stopped early (Ctrl-C); run again to resume.")
    seconds: float = 0.0
    num_vectors: int = Field(0, description="Vectors in the index after the run.")
    main_kind: Optional[str] = None
    rebuilt: bool = Field(False, description="True if the main FAISS index was (re)built from scratch.")
    speech: Optional[SpeechBuildReport] = Field(None, description="The speech pass, when it ran.")


class TranscriptWord(BaseModel):
    """One recognised word with its time span."""

    word: str
    start: float = Field(description="Seconds from the start of the video.")
    end: float
    probability: Optional[float] = Field(None, description="ASR confidence in [0, 1], when known.")


class TranscriptSegment(BaseModel):
    """One sentence-like span of speech."""

    start: float = Field(description="Seconds from the start of the video.")
    end: float
    text: str
    words: list[TranscriptWord] = Field(default_factory=list, description="Word times (empty for subtitles).")


class Transcript(BaseModel):
    """What is said in one video, in time order."""

    path: str = Field(description="Path of the video file.")
    fingerprint: Optional[str] = Field(None, description="Content fingerprint of the video file.")
    source: Literal["asr", "subtitles", "embedded-subtitles", "none"] = Field(
        description="Where the text came from; 'none' for a video without an audio stream."
    )
    model: Optional[str] = Field(None, description="ASR model name, or the subtitle file / stream used.")
    language: Optional[str] = None
    duration: Optional[float] = Field(None, description="Seconds of audio transcribed.")
    segments: list[TranscriptSegment] = Field(default_factory=list)

    def text_between(self, start: float, end: float) -> str:
        """The text of the segments overlapping ``[start, end]``, joined by spaces."""
        return " ".join(s.text for s in self.segments if s.end >= start and s.start <= end).strip()
