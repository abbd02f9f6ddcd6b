"""The evaluation's data model: one benchmark item, one method's prediction for it.

Every reader turns its public format into :class:`EvalItem` objects; every method (baseline or
policy) answers an item with a :class:`Prediction`; the runner appends predictions to a JSONL
file and the report aggregates them.

- :data:`TASKS` - ``mcq`` (multiple choice), ``haystack`` (multiple choice + GT keyframe times),
  ``open`` (open-ended, exact answer), ``grounding`` (a query and its GT window(s) in one video
  of a corpus).
- :class:`EvalItem` - the item.
- :class:`Prediction` - one method's output for one item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field

__all__ = ["TASKS", "Task", "EvalItem", "Prediction", "LETTERS"]

TASKS = ("mcq", "haystack", "open", "grounding")
Task = Literal["mcq", "haystack", "open", "grounding"]
LETTERS = "ABCDEFGHIJ"


class EvalItem(BaseModel):
    """One benchmark item, whatever its source format."""

    item_id: str
    task: Task
    video_id: str
    video_path: Optional[Path] = Field(None, description="Resolved video file (None when absent on disk).")
    question: str = Field(description="The question, or the moment description for grounding.")
    options: Optional[list[str]] = Field(None, description="Multiple-choice option texts, without letters.")
    answer: Optional[str] = Field(None, description="Correct letter (mcq/haystack) or exact answer text (open).")
    gt_windows: Optional[list[tuple[float, float]]] = Field(
        None, description="Grounding: GT window(s) in seconds; 4+ windows follow DiDeMo's two-of-four rule."
    )
    gt_times: Optional[list[float]] = Field(None, description="Haystack: GT keyframe times in seconds.")
    gt_frame_index: Optional[list[int]] = Field(None, description="Haystack: GT keyframe indices (times = index / fps).")
    duration: Optional[float] = None
    answer_space: Optional[list[str]] = Field(None, description="Open-ended: the possible answers, when known.")
    hypothesis_template: Optional[str] = Field(
        None, description="Open-ended: '... {} ...' turning an answer into a caption (zero-shot answerers)."
    )
    source: str = Field("", description="The reader that produced it.")
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def answer_index(self) -> Optional[int]:
        """Index of the correct option (mcq/haystack)."""
        if self.answer is None or self.options is None:
            return None
        return LETTERS.index(self.answer) if self.answer in LETTERS else None

    def prompt(self) -> str:
        """The question as a policy sees it (options lettered, when there are any)."""
        if not self.options:
            return self.question
        lines = [self.question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(self.options)]
        return "\n".join(lines) + "\nAnswer with the option's letter."


class Prediction(BaseModel):
    """One method's output for one item (a line of ``predictions.jsonl``)."""

    item_id: str
    method: str
    task: Task
    video_id: str
    timestamps: list[float] = Field(default_factory=list, description="Frames the method looked at (seconds).")
    answer: Optional[str] = None
    correct: Optional[bool] = None
    moments: list[tuple[str, float, float]] = Field(
        default_factory=list, description="Grounding, corpus-wide: (video_id, start, end) best first."
    )
    windows: list[tuple[float, float]] = Field(
        default_factory=list, description="Grounding inside the GT video: (start, end) best first."
    )
    seconds: float = 0.0
    error: Optional[str] = None
    extra: dict[str, Any] = Field(default_factory=dict)
