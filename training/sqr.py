"""Train Soft Query Refinement (SQR): policy hidden state -> K soft tokens in the retriever's text encoder.

VideoSearch-R1's idea, on our encoders: after the policy has looked at a retrieved moment, its
last hidden state at a ``<REFINE>`` token is projected to ``K`` soft tokens of the retriever's
text-token width; they are inserted into the retriever's own text encoder next to the query
tokens (:meth:`agent_tools.encoders.OpenClipEncoder.encode_text_with_soft_tokens`), and the
refined query vector searches the corpus again. Here the projector is trained with InfoNCE
(``tau`` 0.1) against the positive moment's embedding and negatives.

The model side lives in the library, :mod:`agent_tools.policies.soft_refine`, so what is
trained here is exactly what runs at inference (re-exported here):

- :class:`SoftQueryProjector` - Linear(H->D) -> LayerNorm -> GELU -> Linear(D->K*W), last layer
  zero-initialised.
- :func:`refined_query` - ``normalize(q + e(q, soft) - e(q, 0))``: the soft tokens' effect on
  the encoder's output added to the plain query. Inserting K tokens moves the pooled
  embedding even when they are zero (positions, attention), so ``e(q, 0)`` is subtracted: a
  zero projector gives exactly the plain query, which is what zero-initialising the last
  layer is for (training starts from the original query).
- :func:`refine_hidden_state` - the policy's last hidden state at ``<REFINE>`` placed after the
  corpus verification conversation (the two messages the corpus graph shows the policy)
  and the generation prompt.
- :class:`SoftRefiner` - ``refine_query_vector(messages, frames=...)`` for the corpus graph;
  ``load_policy`` attaches it to checkpoints whose manifest says ``soft_refinement: true``.
- :func:`load_projector` - read a saved projector back (what ``load_policy`` does).

Trainer side (this module):

- :func:`infonce_loss` - ``-log softmax([q.v_pos, q.v_neg...] / tau)[0]``.
- :func:`moment_vector` - a moment's embedding: mean of its stored frame embeddings, unit norm.
- :func:`ensure_refine_token` - add ``<REFINE>`` to the tokenizer (embeddings resized).
- :func:`corpus_conversation` - the verification conversation for one moment.
- :class:`SQRExample`, :func:`load_sqr_examples`, :class:`SQRConfig`, :func:`train_sqr`,
  :func:`save_projector`, :func:`main`
  (``python -m training.sqr --config training/configs/sqr_tiny.json``).

The checkpoint is the policy (``<REFINE>`` added) + ``sqr_projector.safetensors`` +
``sqr_config.json`` (sizes, encoder, tau), with ``soft_refinement: true`` in
``videoseek_policy.json``.

Usage::

    result = train_sqr(SQRConfig(model="runs/grpo", data="sqr.jsonl", output_dir="runs/sqr"))
    policy = load_policy("runs/sqr")               # policy.refine_query_vector is attached
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from agent_tools.policies.soft_refine import (
    SQR_CONFIG_NAME,
    SQR_WEIGHTS_NAME,
    SoftQueryProjector,
    SoftRefiner,
    load_projector,
    refine_hidden_state,
    refined_query,
)
from training.common import prepare_run, save_checkpoint
from training.config import parse_args
from training.data import iter_jsonl
from training.errors import TrainingConfigError, TrainingDataError
from training.rewards import REFINE_TAU, REFINE_TOKEN

__all__ = [
    "SQR_WEIGHTS_NAME",
    "SQR_CONFIG_NAME",
    "SoftQueryProjector",
    "refined_query",
    "ensure_refine_token",
    "corpus_conversation",
    "refine_hidden_state",
    "infonce_loss",
    "moment_vector",
    "SQRExample",
    "load_sqr_examples",
    "SQRConfig",
    "SQRResult",
    "train_sqr",
    "save_projector",
    "load_projector",
    "SoftRefiner",
    "main",
]


def ensure_refine_token(policy: Any, token: str = REFINE_TOKEN) -> int:
    """Add ``token`` to the policy's tokenizer as a special token (resizing the embeddings).

    Returns:
        Its id.
    """
    tok = policy.tokenizer
    if token not in tok.get_vocab():
        tok.add_tokens([token], special_tokens=True)
        policy.model.resize_token_embeddings(len(tok), mean_resizing=False)
    return int(tok.convert_tokens_to_ids(token))


def corpus_conversation(
    query: str, video: str, start: float, end: float, *, frames: int = 4, video_id: Optional[str] = None
) -> list[dict]:
    """The verification conversation the corpus graph shows the policy for one moment.

    The graph's own builder (:func:`agent_tools.graphs.corpus.verification_messages`), so the
    projector trains on exactly the input it gets at inference.
    """
    from agent_tools.graphs.corpus import verification_messages

    return verification_messages(query, video, start, end, num_frames=frames, video_id=video_id)


def infonce_loss(
    q: torch.Tensor, v_pos: torch.Tensor, v_negs: torch.Tensor, tau: float = REFINE_TAU
) -> torch.Tensor:
    """InfoNCE of unit queries against their positive and negatives.

    Args:
        q: ``(B, D)`` queries.
        v_pos: ``(B, D)`` positives.
        v_negs: ``(B, N, D)`` negatives.
        tau: Temperature.

    Returns:
        Mean loss over the batch.
    """
    pos = (q * v_pos).sum(-1, keepdim=True)
    neg = torch.einsum("bd,bnd->bn", q, v_negs)
    logits = torch.cat([pos, neg], dim=1) / tau
    return torch.nn.functional.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))


def moment_vector(searcher: Any, video: str, start: float, end: float) -> torch.Tensor:
    """Unit mean of the stored frame embeddings of ``video`` in ``[start, end]``.

    Raises:
        TrainingDataError: If no sampled frame falls in the window.
    """
    emb = searcher.embeddings(video)
    ts = emb.timestamps
    sel = (ts >= start - 1e-6) & (ts <= end + 1e-6)
    if not sel.any():
        raise TrainingDataError(f"no sampled frame of {video!r} lies in [{start}, {end}]; widen the window")
    v = torch.as_tensor(emb.embeddings_f32[sel]).mean(0)
    return torch.nn.functional.normalize(v, dim=-1)


@dataclass
class SQRExample:
    """One refinement example.

    Attributes:
        query: The original query text.
        shown: ``(video, start, end)`` of the moment the policy verified (and rejected).
        positive: ``(video, start, end)`` of the right moment.
        negatives: Other moments.
    """

    query: str
    shown: tuple[str, float, float]
    positive: tuple[str, float, float]
    negatives: list[tuple[str, float, float]]


def _moment(value: Any, where: str, base: Path) -> tuple[str, float, float]:
    try:
        video = Path(value["video"]).expanduser()
        if not video.is_absolute():
            video = (base / video).resolve()
        return str(video), float(value["start"]), float(value["end"])
    except (KeyError, TypeError, ValueError):
        raise TrainingDataError(f'{where}: a moment is {{"video", "start", "end"}}, got {value!r}') from None


def load_sqr_examples(path: str | Path) -> list[SQRExample]:
    """Read JSONL rows ``{"query", "shown": moment, "positive": moment, "negatives": [moment, ...]}``.

    ``shown`` (the moment the policy verified) may be left out; it is then the positive.

    Raises:
        TrainingDataError: On a missing or empty file or a malformed row (names the line).
    """
    p = Path(path)
    out = []
    for where, row in iter_jsonl(p):
        negs = row.get("negatives") or []
        if not isinstance(row.get("query"), str) or not negs:
            raise TrainingDataError(f"{where}: needs a 'query' string and at least one negative")
        out.append(
            SQRExample(
                row["query"],
                _moment(row.get("shown", row.get("positive")), where, p.parent),
                _moment(row.get("positive"), where, p.parent),
                [_moment(n, where, p.parent) for n in negs],
            )
        )
    if not out:
        raise TrainingDataError(f"data file {str(p)!r} holds no examples")
    return out


@dataclass
class SQRConfig:
    """Train the soft-query-refinement projector with InfoNCE."""

    model: str = field(
        metadata={"help": "Policy checkpoint (the projector reads its hidden state at <REFINE>)."}
    )
    data: str = field(
        metadata={"help": "JSONL: query, shown / positive moments, negatives ({video, start, end})."}
    )
    output_dir: str = field(
        metadata={"help": "Checkpoint directory: the policy (with <REFINE>) + sqr_projector.safetensors."}
    )
    encoder: str = field(
        default="siglip-b16",
        metadata={
            "help": "Retriever encoder whose text tower receives the soft tokens (must be the corpus index's)."
        },
    )
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Frame-embedding cache."})
    device: str = field(default="cpu", metadata={"help": "Torch device."})
    num_tokens: int = field(default=8, metadata={"help": "Soft tokens K (VideoSearch-R1: 8)."})
    proj_dim: Optional[int] = field(
        default=None, metadata={"help": "Projector inner width D (default: the text width)."}
    )
    tau: float = field(
        default=REFINE_TAU, metadata={"help": "InfoNCE temperature (VideoSearch-R1's script: 0.1)."}
    )
    learning_rate: float = field(
        default=5e-5, metadata={"help": "Projector learning rate (VideoSearch-R1: 5e-5)."}
    )
    tune_policy: bool = field(
        default=False, metadata={"help": "Also back-propagate into the policy (off: the policy is frozen)."}
    )
    verify_frames: int = field(
        default=4, metadata={"help": "Frames of the shown moment, as in the corpus graph."}
    )
    batch_size: int = field(default=4, metadata={"help": "Examples per step."})
    max_steps: int = field(default=200, metadata={"help": "Optimizer steps."})
    seed: int = field(default=0, metadata={"help": "Seed."})
    logging_steps: int = field(default=10, metadata={"help": "Print the loss every N steps (0: silent)."})
    run_name: Optional[str] = field(default=None, metadata={"help": "Manifest name."})

    def __post_init__(self) -> None:
        for name in ("num_tokens", "batch_size", "max_steps", "verify_frames"):
            if int(getattr(self, name)) < 1:
                raise TrainingConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tau <= 0 or self.learning_rate <= 0:
            raise TrainingConfigError("tau and learning_rate must be > 0")


@dataclass
class SQRResult:
    """Checkpoint directory, the projector, and the loss of each step."""

    output_dir: Path
    projector: SoftQueryProjector
    losses: list[float]
    step_seconds: list[float]


def train_sqr(
    config: SQRConfig,
    *,
    searcher: Any = None,
    policy: Any = None,
    examples: Optional[Sequence[SQRExample]] = None,
) -> SQRResult:
    """Train the projector (and optionally the policy) and save the checkpoint.

    Args:
        config: The recipe.
        searcher: ``TemporalSearcher`` over ``config.encoder`` (frames and moment embeddings).
        policy: The policy (default: loaded from ``config.model``).
        examples: Training examples (default: read from ``config.data``).

    Returns:
        The :class:`SQRResult`.
    """
    searcher, policy = prepare_run(config, searcher=searcher, policy=policy)
    encoder = searcher.encoder
    data = list(examples) if examples is not None else load_sqr_examples(config.data)
    rid = ensure_refine_token(policy)
    policy.model.train(config.tune_policy)
    policy.model.requires_grad_(config.tune_policy)
    hidden = int(policy.model.config.get_text_config().hidden_size)
    proj = SoftQueryProjector(hidden, encoder.text_width, config.num_tokens, config.proj_dim).to(
        policy.model.device
    )
    params = list(proj.parameters()) + (list(policy.model.parameters()) if config.tune_policy else [])
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)

    convs = [corpus_conversation(ex.query, *ex.shown, frames=config.verify_frames) for ex in data]
    pos = torch.stack([moment_vector(searcher, *ex.positive) for ex in data])
    n_neg = min(len(ex.negatives) for ex in data)
    negs = torch.stack(
        [torch.stack([moment_vector(searcher, *m) for m in ex.negatives[:n_neg]]) for ex in data]
    )
    frozen_h: dict[int, torch.Tensor] = {}

    def hidden_of(i: int) -> torch.Tensor:
        if config.tune_policy:
            return refine_hidden_state(policy, convs[i], searcher.frames, refine_id=rid)
        if i not in frozen_h:  # a frozen policy gives the same state every time
            with torch.no_grad():
                frozen_h[i] = refine_hidden_state(policy, convs[i], searcher.frames, refine_id=rid)
        return frozen_h[i]

    gen = torch.Generator().manual_seed(config.seed)
    losses, times = [], []
    for step in range(config.max_steps):
        t0 = time.perf_counter()
        idx = torch.randperm(len(data), generator=gen)[: config.batch_size].tolist()
        h = torch.stack([hidden_of(i) for i in idx])
        q = refined_query(encoder, [data[i].query for i in idx], proj(h))
        loss = infonce_loss(q, pos[idx], negs[idx], config.tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        times.append(time.perf_counter() - t0)
        if config.logging_steps and (step + 1) % config.logging_steps == 0:
            print(
                json.dumps(
                    {"step": step + 1, "infonce": round(losses[-1], 4), "seconds": round(times[-1], 3)}
                ),
                flush=True,
            )
    policy.model.requires_grad_(True)
    out = save_checkpoint(
        policy,
        config.output_dir,
        config=config,
        trainer="sqr",
        name=config.run_name,
        encoder=config.encoder,
        soft_refinement=True,
    )
    save_projector(proj, out, encoder=config.encoder, tau=config.tau)
    return SQRResult(out, proj, losses, times)


def save_projector(
    projector: SoftQueryProjector,
    directory: str | Path,
    *,
    encoder: Optional[str] = None,
    tau: float = REFINE_TAU,
) -> Path:
    """Write ``sqr_projector.safetensors`` and ``sqr_config.json`` into ``directory``."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in projector.state_dict().items()},
        str(d / SQR_WEIGHTS_NAME),
    )
    meta = dict(
        projector.config(), encoder=encoder, tau=tau, refine_token=REFINE_TOKEN, format="videoseek-sqr-v1"
    )
    (d / SQR_CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return d


def main(argv: Optional[Sequence[str]] = None) -> SQRResult:
    """``python -m training.sqr --config PATH [--field value ...]``."""
    config = parse_args(SQRConfig, argv, prog="python -m training.sqr")
    result = train_sqr(config)
    print(
        json.dumps(
            {
                "output_dir": str(result.output_dir),
                "first_loss": result.losses[0],
                "last_loss": result.losses[-1],
            }
        )
    )
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
