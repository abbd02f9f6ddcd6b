"""RL prompt filtering: TimeSearch-R's stage-1 "visual dependency" filter.

TimeSearch-R (paper, section 3.3 and appendix B.1) builds its GRPO-CSV data in two stages. Stage 1
feeds the policy model 4 uniformly sampled frames with the question and drops every question it
answers correctly: such a question needs no search, so all rollouts of its group score alike
(zero advantage, no learning signal), and its Table 3 shows RL without this filter falling below
the starting model. Stage 2 keeps the questions a search can answer; the authors ran it with an
earlier TimeSearch model, and a dataset built with it (theirs, or one with a demonstrated search,
as ``benchmarks/bench_learning_text.py`` builds) arrives here already filtered. Their repository
ships the filtered data, not the filter, so the rule below follows the paper's text.

- :func:`uniform_frame_answer` - the policy answers one question from ``num_frames`` uniformly
  sampled frames alone (the completeness check's prompt, :func:`agent_tools.graphs.temporal.verify_frames`,
  with the preview's uniform frames instead of searched ones).
- :func:`visual_dependency_filter` - that for every prompt row; rows answered right (score >=
  ``threshold`` by :func:`training.rewards.score_answer`, the accuracy reward's rule) are dropped.
  Returns a :class:`FilterReport`.
- :func:`filter_before_training` - what ``training.grpo.build_trainer`` runs: the filter with
  the model in eval mode (back in training mode after), refusing to leave no prompt.
- :func:`main` - ``python -m training.filtering PROMPTS.jsonl --policy DIR|URL --encoder NAME --out
  KEPT.jsonl``: the same over a prompt file with any policy :func:`agent_tools.policies.load_policy`
  loads, a checkpoint or an OpenAI-compatible endpoint (a vLLM server, for a 7B model on GPUs);
  the kept rows are written unchanged, and ``--report`` gets every answer.

``training.grpo`` runs it before training when a recipe sets ``filter_uniform_frames`` (the
paper's 4), with the policy it is about to train: the filter asks "can *this* policy answer
without searching", which for a text-only model trained from a small base is the SFT start (the
base model does not yet answer in the protocol, so it would drop nothing). On several GPUs,
filter once with :func:`main` and train on its output instead: inside ``build_trainer`` every
rank would answer every prompt with the policy still on the CPU. Measured on the SmolLM2 text
benchmark (``benchmarks/README.md``): it dropped 7-8 of 15 prompts per seed and did not give the
remaining steps more gradient, so that recipe leaves it off.

Usage::

    python -m training.filtering data/grpo.jsonl --policy runs/sft --encoder siglip-b16 --out data/grpo.kept.jsonl
    python -m training.filtering data/grpo.jsonl --policy http://localhost:8000/v1 --encoder siglip-b16 \
        --out data/grpo.kept.jsonl --report data/grpo.filter.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from training.errors import TrainingDataError

__all__ = ["FilterReport", "filter_before_training", "main", "uniform_frame_answer", "visual_dependency_filter"]


@dataclass
class FilterReport:
    """What the filter kept and dropped.

    Attributes:
        kept: Rows the policy could not answer from the uniform frames (the RL prompts).
        dropped: Rows it answered right from them.
        answers: One ``{"question", "video", "answer", "score", "timestamps"}`` per input row, in order.
        num_frames: Uniform frames shown per question.
    """

    kept: list[Any] = field(default_factory=list)
    dropped: list[Any] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    num_frames: int = 4

    def summary(self) -> str:
        """One line: ``kept K of N (D answered from N uniform frames alone)``."""
        n = len(self.kept) + len(self.dropped)
        return (f"kept {len(self.kept)} of {n} prompts ({len(self.dropped)} answered right from "
                f"{self.num_frames} uniform frames alone)")


def _get(row: Any, name: str, default: Any = None) -> Any:
    return row.get(name, default) if isinstance(row, dict) else getattr(row, name, default)


def uniform_frame_answer(
    policy: Any,
    searcher: Any,
    question: str,
    video: str,
    *,
    num_frames: int = 4,
    frames: Any = None,
    max_new_tokens: Optional[int] = None,
) -> tuple[Optional[str], list[float]]:
    """The policy's answer to ``question`` from ``num_frames`` uniformly sampled frames of ``video`` alone.

    Args:
        policy: Any :class:`~agent_tools.policies.Policy` (a text-only one reads the frames as its text lines).
        searcher: The ``TemporalSearcher`` (its ``preview`` picks the uniform frames).
        question: The question.
        video: Video path or id.
        num_frames: Uniform frames (TimeSearch-R: 4).
        frames: Frame resolver for image policies (default: the searcher's decoder, cached).
        max_new_tokens: Tokens of the answer (default: the policy's).

    Returns:
        ``(answer or None, timestamps shown)``.
    """
    from agent_tools.graphs.temporal import verify_frames
    from agent_tools.policies.base import CachingResolver

    sel = searcher.preview(video, num_frames=int(num_frames))
    seen = [{"video": video, "timestamp": float(t)} for t in sel.timestamps]
    if frames is None:
        frames = CachingResolver(searcher.frames)
    got = verify_frames(policy, question, seen, None, frames=frames, max_new_tokens=max_new_tokens)
    answer = got["answer"] if got["sufficient"] else None
    return answer, [f["timestamp"] for f in seen]


def visual_dependency_filter(
    policy: Any,
    searcher: Any,
    rows: Sequence[Any],
    *,
    num_frames: int = 4,
    threshold: float = 1.0,
    frames: Any = None,
    max_new_tokens: Optional[int] = None,
    progress: bool = False,
) -> FilterReport:
    """TimeSearch-R stage 1: drop the prompts ``policy`` answers right from ``num_frames`` uniform frames.

    Args:
        policy: The policy RL will train (greedy answers).
        searcher: The ``TemporalSearcher`` over the rows' videos.
        rows: Prompt rows (:class:`training.data.Trajectory` or dicts) with ``question``,
            ``video``, ``answer`` and ``problem_type``.
        num_frames: Uniform frames per question (TimeSearch-R: 4).
        threshold: A row whose answer scores at least this (:func:`training.rewards.score_answer`:
            1 or 0 for choices and exact answers, the IoU for grounding) is dropped.
        frames: Frame resolver for image policies (default: the searcher's decoder, cached).
        max_new_tokens: Tokens of each answer (default: the policy's).
        progress: Show a progress bar (tqdm).

    Returns:
        The :class:`FilterReport` (kept rows in their input order).

    Raises:
        TrainingDataError: On ``num_frames < 1``, a threshold outside ``(0, 1]``, or a row the
            accuracy rule cannot score (the message names the row).
    """
    from training.rewards import score_answer

    if int(num_frames) < 1:
        raise TrainingDataError(f"num_frames must be >= 1 (TimeSearch-R uses 4), got {num_frames}")
    if not 0.0 < float(threshold) <= 1.0:
        raise TrainingDataError(f"threshold must be in (0, 1], got {threshold}")
    if frames is None:
        from agent_tools.policies.base import CachingResolver

        frames = CachingResolver(searcher.frames)
    report = FilterReport(num_frames=int(num_frames))
    items: Any = rows
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(rows, desc=f"answering from {num_frames} uniform frames", unit="prompt")
    for i, row in enumerate(items):
        question, video = _get(row, "question"), _get(row, "video")
        if not question or not video:
            raise TrainingDataError(f"prompt row {i} needs 'question' and 'video', got {row!r}")
        answer, stamps = uniform_frame_answer(
            policy, searcher, question, video, num_frames=num_frames, frames=frames, max_new_tokens=max_new_tokens
        )
        try:
            score = score_answer(answer, _get(row, "answer"), _get(row, "problem_type", "open_ended"), question=question)
        except TrainingDataError as exc:
            raise TrainingDataError(f"prompt row {i} ({video}): {exc}") from exc
        report.answers.append({"question": question, "video": video, "answer": answer, "score": score,
                               "timestamps": stamps})
        (report.dropped if score >= threshold else report.kept).append(row)
    return report


def filter_before_training(
    policy: Any, searcher: Any, rows: Sequence[Any], *, num_frames: int, max_new_tokens: Optional[int] = None
) -> tuple[list[Any], FilterReport]:
    """:func:`visual_dependency_filter` on the policy about to be trained (greedy, eval mode); prints the summary.

    Returns:
        ``(kept rows, report)``.

    Raises:
        TrainingDataError: When the policy answers every prompt from the uniform frames (nothing left to train on).
    """
    model = getattr(policy, "model", None)
    was_training = bool(getattr(model, "training", False))
    if model is not None:
        model.eval()
    try:
        report = visual_dependency_filter(policy, searcher, rows, num_frames=num_frames, max_new_tokens=max_new_tokens,
                                          progress=True)
    finally:
        if model is not None:
            model.train(was_training)
    if not report.kept:
        raise TrainingDataError(f"filter_uniform_frames {num_frames}: the policy answers every one of the {len(rows)} "
                                "prompts from uniform frames alone; give harder prompts or set it to 0")
    print(f"filter_uniform_frames {num_frames}: {report.summary()}", flush=True)
    return report.kept, report


def _text_tagger(policy: Any, searcher: Any, vocabulary: Optional[str], top_k: Optional[int]) -> Any:
    """A text-only policy's tagger: over ``vocabulary`` (``videoseek ask``'s ``--vocabulary``), else its manifest's."""
    from agent_tools.agent_cli import read_vocabulary
    from agent_tools.observations import EncoderTagger

    manifest = getattr(policy, "manifest", None)
    if top_k is None:
        top_k = int(getattr(manifest, "tag_top_k", None) or 1)
    vocab = read_vocabulary(vocabulary) if vocabulary else getattr(manifest, "tag_vocabulary", None)
    return EncoderTagger(searcher, list(vocab), top_k=top_k) if vocab else None


def _run(argv: Optional[Sequence[str]]) -> FilterReport:
    import argparse
    import json
    from pathlib import Path

    from agent_tools.corpus._io import atomic_write
    from agent_tools.policies import load_policy
    from training.common import build_searcher
    from training.data import iter_jsonl, load_prompts

    ap = argparse.ArgumentParser(prog="python -m training.filtering", description=__doc__.splitlines()[0])
    ap.add_argument("prompts", help="JSONL of GRPO prompts: question, video, answer, problem_type")
    ap.add_argument("--policy", required=True, help="policy checkpoint folder or OpenAI-compatible base URL (vLLM)")
    ap.add_argument("--model", default=None, help="served model name for a URL policy")
    ap.add_argument("--encoder", required=True, help="registered encoder of the searcher (videoseek encoders)")
    ap.add_argument("--cache-dir", default=None, help="frame-embedding cache folder")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--frames", type=int, default=4, help="uniform frames per question (TimeSearch-R: 4)")
    ap.add_argument("--threshold", type=float, default=1.0, help="drop a prompt whose answer scores at least this")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="tokens per answer (default: the policy's)")
    ap.add_argument("--observation", choices=("images", "text"), default=None,
                    help="text: frames as text lines (default: as the policy's manifest says)")
    ap.add_argument("--vocabulary", default=None,
                    help="text observations: zero-shot tags, 'world' or a file of one tag per line (default: the manifest's)")
    ap.add_argument("--tags", type=int, default=None, help="text observations: tags per frame (default: the manifest's, else 1)")
    ap.add_argument("--out", required=True, help="JSONL of the kept prompts (rows written as read)")
    ap.add_argument("--report", default=None, help="JSON of every answer, score and shown timestamps")
    a = ap.parse_args(argv)
    path = Path(a.prompts)
    raw = [row for _, row in iter_jsonl(path)]
    rows = load_prompts(path)  # validated, video paths resolved against the file's folder
    device = a.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    searcher = build_searcher(a.encoder, cache_dir=a.cache_dir, device=device)
    policy = load_policy(a.policy, model=a.model, device=a.device, **({"text_only": True} if a.observation == "text" else {}))
    if getattr(policy, "text_only", False) and getattr(policy, "tagger", None) is None:
        policy.tagger = _text_tagger(policy, searcher, a.vocabulary, a.tags)
    report = visual_dependency_filter(policy, searcher, rows, num_frames=a.frames, threshold=a.threshold,
                                      max_new_tokens=a.max_new_tokens, progress=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keep = [r for r, ans in zip(raw, report.answers) if ans["score"] < a.threshold]
    # a crash never leaves half a prompt file (temporary file, fsync, rename: the index's own writer)
    atomic_write(out, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in keep)))
    if a.report:
        text = json.dumps({"prompts": str(path), "policy": a.policy, "num_frames": a.frames, "threshold": a.threshold,
                           "kept": len(report.kept), "dropped": len(report.dropped), "answers": report.answers}, indent=1)
        atomic_write(Path(a.report), lambda tmp: tmp.write_text(text))
    print(f"{report.summary()} -> {out}")
    return report


def main(argv: Optional[Sequence[str]] = None) -> FilterReport:
    """``python -m training.filtering PROMPTS --policy DIR|URL --encoder NAME --out KEPT``; errors exit 2 in one line."""
    from training.common import run_cli

    return run_cli(_run, argv)


if __name__ == "__main__":  # pragma: no cover
    main()
