"""Soft query refinement at search time: load a refiner for an index, run one verify-and-refine round.

Split from :mod:`agent_tools.policies.soft_refine` (re-exported there).

- :func:`load_refiner` - an SQR checkpoint for the index's encoder; another encoder is refused.
- :func:`refine_search` - search, let the refiner's policy verify the top moment, re-search with
  the soft-refined query when it does not match (``videoseek search --refiner``; the MCP server's hook).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError
from agent_tools.policies.soft_refine import SoftRefiner, check_refiner_encoder, load_projector

__all__ = ["load_refiner", "refine_search"]


def load_refiner(
    directory: str | Path, encoder: Any, *, device: str = "cpu", **policy_kwargs: Any
) -> SoftRefiner:
    """Load an SQR checkpoint for ``encoder`` (the corpus index's), refusing a mismatched one.

    Args:
        directory: A ``training.sqr`` checkpoint (``soft_refinement: true``).
        encoder: The index's encoder object.
        device: Torch device of the policy.
        **policy_kwargs: ``load_policy`` arguments (``max_new_tokens``...).

    Returns:
        The refiner; its ``policy`` verifies moments.

    Raises:
        PolicyLoadError: If the directory is not an SQR checkpoint.
        RefinerEncoderMismatchError: If it was trained for another encoder.
    """
    from agent_tools.policies.manifest import PolicyLoadError, read_manifest

    d = Path(directory).expanduser()
    manifest = read_manifest(d)
    if not manifest.soft_refinement:
        raise PolicyLoadError(
            f"{d} is not a soft-refinement checkpoint (soft_refinement is false in its manifest); "
            "train one with python -m training.sqr"
        )
    _, meta = load_projector(d)
    check_refiner_encoder(meta, encoder, where=f"refiner {str(d)!r}")
    from agent_tools.policies.manifest import load_policy

    policy = load_policy(d, device=device, **policy_kwargs)
    refiner = policy.refine_query_vector
    refiner.use_encoder(encoder)
    return refiner


def refine_search(
    moment_searcher: Any,
    refiner: SoftRefiner,
    query: str,
    *,
    top_k: int = 5,
    video: Any = None,
    verify_frames: int = 4,
    frames: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """One VideoSearch-R1 round: search, let the refiner's policy verify the top moment, re-search.

    Args:
        moment_searcher: A ``MomentSearcher`` over the index (its encoder must be the refiner's).
        refiner: A :class:`SoftRefiner` (:func:`load_refiner`).
        query: The text query.
        top_k: Moments returned.
        video: Restrict to one indexed video.
        verify_frames: Frames of the top moment shown to the policy.
        frames: Frame resolver (default: decode from the moment's file).

    Returns:
        ``(MomentSearchResult, round)``: the first search's result when the policy says the top
        moment matches, else the search with the refined query vector (``query`` kept as its
        label); ``round`` holds the verified moment, the verdict and the reply.

    Raises:
        InvalidArgumentError: If the first search finds nothing to verify.
    """
    from agent_tools.graphs.corpus import verification_messages, video_frame_resolver

    frames = frames or video_frame_resolver
    refiner.use_encoder(moment_searcher.encoder)
    first = moment_searcher.search(query, top_k=top_k, video=video)
    if not first.moments:
        raise InvalidArgumentError("the first search found no moment to verify; index some videos first")
    m = first.moments[0]
    convo = verification_messages(
        query, m.path, m.start, m.end, num_frames=verify_frames, video_id=m.video_id
    )
    gen = refiner.policy.generate_details(convo, frames=frames)
    verdict = protocol.parse_verification(gen.text)
    info = {"moment": m.model_dump(mode="json"), "matched": verdict.matched, "reply": gen.text}
    if verdict.matched:
        return first, info
    vec = refiner(convo, frames, completion_ids=gen.completion_ids)
    result = moment_searcher.search(vec, top_k=top_k, video=video)
    result.query = query
    return result, info
