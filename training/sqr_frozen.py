"""SQR stage 1 with the policy frozen (VideoSearch-R1's ``tune_mm_llm False``): each row's prefix runs once.

VideoSearch-R1's stage-1 script exposes ``--tune_mm_llm`` (``videosearch_r1/utils/arguments.py``
``ModelArguments``; ``train_sft_qwen3_vl_share_gpt.py`` sets ``requires_grad = False`` on the
language model and ``lm_head`` when it is False): then only the three SQR maps train. With the
policy's weights fixed, a row's forward over its verification prompt + reply + ``<REFINE>``
gives the same hidden state and KV cache at every step; only the latent rollout changes (the
latents enter through the trained ``roll_in`` map). So here that prefix is computed once per row
and every step runs :func:`~agent_tools.policies.soft_refine.continue_rollout` on a batch of the
cached prefixes (KV left-padded with zeros under a zero attention mask). This is exact, not an
approximation (``tests/test_training_sqr.py`` checks it against
:func:`~agent_tools.policies.soft_refine.rollout_latents`), and it is what makes a pretrained
135M policy trainable on two CPU cores: a step costs 7 one-token forwards per row instead of a
~190-token forward and backward.

Held-out rows are cached the same way after the policy's *own* greedy reply (generated once:
a frozen policy replies the same at every evaluation), or after the target reply.

- :class:`PrefixCache` - per-row ``<REFINE>`` hidden state, KV cache, first latent position and
  LM loss of the reply; :meth:`PrefixCache.build`, :meth:`PrefixCache.rollout`.
- :func:`cached_recall_at_1` - held-out R@1 (plain vs refined query) from cached prefixes.
- :func:`own_reply_rows` - held-out rows prompt + the policy's own generated reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from agent_tools.policies.soft_refine import (
    SoftQueryProjector,
    _unwrap,
    continue_rollout,
    refine_inputs,
    refined_query,
)

__all__ = ["PrefixCache", "cached_recall_at_1", "own_reply_rows"]


class PrefixCache:
    """The frozen policy's prefix of each row: ``<REFINE>`` hidden state, KV cache, positions, LM loss.

    Args:
        entries: One dict per row: ``h`` ``(H,)``, ``kv`` (per layer ``(keys, values)``, each
            ``(1, heads, L, head_dim)``), ``base`` (position of the first latent), ``lm`` (LM loss
            of the reply tokens, or NaN) and ``reply`` (the reply text).
        mrope: The policy uses Qwen-VL's 3-axis positions.
    """

    def __init__(self, entries: list[dict[str, Any]], mrope: bool):
        self.entries = entries
        self.mrope = mrope

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    @torch.no_grad()
    def build(cls, model: Any, rows: Sequence[dict], tokenizer: Any = None) -> PrefixCache:
        """Run each row's prefix once.

        Args:
            model: The (frozen) policy model.
            rows: :func:`training.sqr_trainer.encode_rows` rows (``inputs``, ``n_reply``).
            tokenizer: Decodes each reply for the record (optional).

        Returns:
            The cache.
        """
        was_training = model.training
        model.eval()
        core = getattr(_unwrap(model), "model", None)
        entries = []
        mrope = False
        try:
            for r in rows:
                inputs = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in r["inputs"].items()}
                ids = inputs["input_ids"]
                n = int(r["n_reply"])
                labels = torch.full_like(ids, -100)
                labels[0, -n:] = ids[0, -n:]
                if core is not None and hasattr(core, "rope_deltas"):
                    core.rope_deltas = None
                out = model(**inputs, labels=labels, use_cache=True, output_hidden_states=True)
                deltas = getattr(core, "rope_deltas", None)
                mrope = deltas is not None
                length = ids.shape[1]
                base = length + (int(deltas.reshape(-1)[0]) if mrope else 0)
                cache = out.past_key_values
                kv = [(layer.keys.detach(), layer.values.detach()) for layer in cache.layers]
                entries.append(
                    {
                        "h": out.hidden_states[-1][0, -1].detach(),
                        "kv": kv,
                        "base": base,
                        "lm": float(out.loss) if n > 1 else float("nan"),
                        "reply": tokenizer.decode(ids[0, -n:]) if tokenizer is not None else "",
                    }
                )
        finally:
            model.train(was_training)
        return cls(entries, mrope)

    def rollout(
        self, model: Any, projector: SoftQueryProjector, indices: Sequence[int]
    ) -> tuple[torch.Tensor, float]:
        """Latents of rows ``indices`` (batched, KV left-padded) and their mean reply LM loss.

        Returns:
            ``((B, K, D) latents with gradients into the projector, mean LM loss)``.
        """
        from transformers import DynamicCache

        sel = [self.entries[i] for i in indices]
        length = max(e["kv"][0][0].shape[2] for e in sel)
        layers = []
        for li in range(len(sel[0]["kv"])):
            ks, vs = [], []
            for e in sel:
                k, v = e["kv"][li]
                pad = length - k.shape[2]
                ks.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
                vs.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
            layers.append((torch.cat(ks), torch.cat(vs)))
        dev = sel[0]["h"].device
        mask = torch.zeros(len(sel), length, dtype=torch.long, device=dev)
        for i, e in enumerate(sel):
            mask[i, length - e["kv"][0][0].shape[2] :] = 1
        h = torch.stack([e["h"] for e in sel])
        base = torch.tensor([[e["base"]] for e in sel], dtype=torch.long, device=dev)
        latents = continue_rollout(
            model, projector, h, DynamicCache(ddp_cache_data=layers), base, mask, mrope=self.mrope
        )
        lms = [e["lm"] for e in sel if e["lm"] == e["lm"]]
        return latents, (sum(lms) / len(lms) if lms else 0.0)


def own_reply_rows(
    policy: Any, examples: Sequence[Any], frames: Any, verify_frames: int, max_new_tokens: int
) -> list[dict]:
    """Each example's verification prompt + the policy's own greedy reply (+ ``<REFINE>``), as model inputs."""
    from training.sqr import corpus_conversation

    rows = []
    for ex in examples:
        convo = corpus_conversation(ex.query, *ex.shown, frames=verify_frames)
        gen = policy.generate_details(convo, max_new_tokens=max_new_tokens, frames=frames)
        inputs, n = refine_inputs(policy, convo, frames, completion_ids=gen.completion_ids)
        rows.append({"inputs": {k: v.detach().cpu() for k, v in inputs.items()}, "n_reply": n})
    return rows


@torch.no_grad()
def cached_recall_at_1(
    model: Any,
    projector: SoftQueryProjector,
    encoder: Any,
    examples: Sequence[Any],
    bank: Any,
    prefixes: PrefixCache,
    batch_size: int = 16,
) -> dict[str, float]:
    """R@1 over ``bank`` of each example's plain query and of its refined query (cached prefixes).

    Returns:
        ``{"r1_unrefined", "r1_refined", "n"}`` as :func:`training.sqr_trainer.recall_at_1`.
    """
    was = projector.training
    projector.eval()
    plain_hits = refined_hits = 0
    try:
        for s in range(0, len(examples), batch_size):
            idx = list(range(s, min(len(examples), s + batch_size)))
            exs = [examples[i] for i in idx]
            pos = torch.tensor([bank.id(ex.positive) for ex in exs])
            plain = torch.as_tensor(encoder.encode_text([ex.query for ex in exs]), dtype=torch.float32)
            plain_hits += int((torch.argmax(plain @ bank.vectors.T, -1) == pos).sum())
            latents, _ = prefixes.rollout(model, projector, idx)
            q = refined_query(encoder, [ex.query for ex in exs], projector.soft_tokens(latents))
            refined_hits += int((torch.argmax(q @ bank.vectors.T, -1) == pos).sum())
    finally:
        projector.train(was)
    n = max(1, len(examples))
    return {"r1_unrefined": plain_hits / n, "r1_refined": refined_hits / n, "n": float(len(examples))}
