"""Policy backend over a local transformers vision-language model.

Any image-text-to-text model with a chat template works: Qwen2.5-VL, Qwen3-VL, or
another ``AutoModelForImageTextToText`` whose processor accepts ``text=`` and ``images=``.
Frames reach the model as image blocks in the chat template, each preceded by its
timestamp text; pixels exist only inside :meth:`TransformersPolicy._generate`.

Names: :class:`TransformersPolicy` (``from_pretrained(path)``, ``generate``, ``generate_batch``,
``save_pretrained``, ``push_to_hub``),
:data:`STOP_STRINGS`, :func:`resolve_device`, and two helpers shared with the trainer and
:mod:`~agent_tools.policies.soft_refine`: :func:`split_images` (chat-template messages + the
images, in order) and :func:`append_token_ids` (extend one sequence's model inputs by token ids).

Usage::

    policy = TransformersPolicy.from_pretrained("runs/grpo/checkpoint-500", device="cuda")
    text = policy.generate(messages, frames=searcher.frames, max_new_tokens=256)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError
from agent_tools.policies.base import ChatMessage, Generation, Policy
from agent_tools.policies.manifest import PolicyLoadError

__all__ = ["TransformersPolicy", "STOP_STRINGS", "resolve_device", "split_images", "append_token_ids"]

#: Generation stops once a turn is complete (:data:`agent_tools.protocol.STOP_STRINGS`).
STOP_STRINGS = protocol.STOP_STRINGS


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; other values pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def split_images(messages: Sequence[ChatMessage]) -> tuple[list[ChatMessage], list[Any]]:
    """Prepared messages -> (chat-template messages with image blocks emptied, the images in order).

    The chat template only needs ``{"type": "image"}`` placeholders; the processor gets the
    pixels separately, in the same order.
    """
    images: list[Any] = []
    templated: list[ChatMessage] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            blocks = []
            for b in content:
                if b.get("type") == "image":
                    images.append(b["image"])
                    blocks.append({"type": "image"})
                else:
                    blocks.append(b)
            templated.append({**m, "content": blocks})
        else:
            templated.append(dict(m))
    return templated, images


def append_token_ids(inputs: Any, ids: Sequence[int]) -> Any:
    """Extend the model inputs of one sequence (batch 1) by ``ids``, in place.

    Every ``(1, L)`` row grows by ``len(ids)``: ``input_ids`` by the ids, ``attention_mask`` by
    ones, any other per-token row (token types, ...) by zeros, as for text tokens.

    Returns:
        ``inputs``.
    """
    import torch

    input_ids = inputs["input_ids"]
    n = int(input_ids.shape[1])
    tail = torch.tensor([list(ids)], dtype=input_ids.dtype, device=input_ids.device)
    for key in list(inputs.keys()):
        v = inputs[key]
        if torch.is_tensor(v) and v.dim() == 2 and tuple(v.shape) == (1, n):
            if key == "input_ids":
                extra = tail
            elif key == "attention_mask":
                extra = torch.ones_like(tail)
            else:
                extra = torch.zeros_like(tail)
            inputs[key] = torch.cat([v, extra], dim=1)
    return inputs


class TransformersPolicy(Policy):
    """A local VLM (model + processor) that writes one turn per call.

    Args:
        model: A transformers generation model taking the processor's outputs.
        processor: Its processor (tokenizer + image processor + chat template).
        name: Display name.
        do_sample: Sample instead of greedy decoding (GRPO rollouts sample).
        temperature: Sampling temperature (ignored when greedy).
        top_p: Nucleus sampling mass (ignored when greedy).
        stop_strings: Strings that end a turn early.
        generation_kwargs: Extra ``generate`` keyword arguments.
        **policy_kwargs: ``max_new_tokens``, ``max_side``, ``tool_role``, ``manifest``, ``text_only``
            (a causal LM whose ``processor`` is its tokenizer; frames reach it as text) and ``tagger``.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: Optional[str] = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop_strings: Optional[tuple[str, ...]] = STOP_STRINGS,
        generation_kwargs: Optional[dict[str, Any]] = None,
        **policy_kwargs: Any,
    ):
        super().__init__(**policy_kwargs)
        if (
            getattr(processor, "chat_template", None) is None
            and getattr(getattr(processor, "tokenizer", None), "chat_template", None) is None
        ):
            raise InvalidArgumentError("the processor has no chat template; set processor.chat_template")
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.name = (
            name or getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
        )
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_p = top_p
        self.stop_strings = tuple(stop_strings) if stop_strings else None
        self.generation_kwargs = dict(generation_kwargs or {})

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        manifest: Any = None,
        device: str = "auto",
        dtype: Any = "auto",
        **kwargs: Any,
    ) -> "TransformersPolicy":
        """Load model and processor from a ``save_pretrained`` directory (offline).

        Args:
            path: The directory.
            manifest: Its :class:`~agent_tools.policies.manifest.PolicyManifest` (sets the
                defaults for ``max_new_tokens``, ``max_side`` and ``tool_role``).
            device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
            dtype: Torch dtype, or ``"auto"`` (bfloat16 on CUDA, float32 on CPU).
            **kwargs: Constructor arguments.

        Returns:
            The policy, model in eval mode on ``device``.
        """
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        dev = resolve_device(device)
        if dtype == "auto":
            dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32
        if kwargs.get("text_only"):  # a text-only language model (e.g. SmolLM2): tokenizer + causal LM
            from transformers import AutoModelForCausalLM, AutoTokenizer

            loaders, what = (AutoTokenizer, AutoModelForCausalLM), "a causal language model"
        else:
            loaders, what = (AutoProcessor, AutoModelForImageTextToText), "an image-text-to-text model"
        try:
            processor = loaders[0].from_pretrained(str(path))
            model = loaders[1].from_pretrained(str(path), dtype=dtype).to(dev).eval()
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PolicyLoadError(
                f"{str(path)!r} cannot be loaded as {what} ({loaders[0].__name__} + "
                f"{loaders[1].__name__}): {first}"
            ) from None
        if manifest is not None:
            kwargs.setdefault("max_new_tokens", manifest.max_new_tokens)
            if not kwargs.get("text_only"):
                kwargs.setdefault("max_side", manifest.max_side)
            kwargs.setdefault("tool_role", manifest.tool_role)
            kwargs.setdefault("name", manifest.name or str(path))
        policy = cls(model, processor, manifest=manifest, **kwargs)
        from agent_tools.policies.vision_tokens import suppress_vision_placeholders

        # only the processor may place image/video placeholders; a sampled one breaks the next
        # turn's forward ("image tokens N+1, features N"): never generate them (no-op for text LMs)
        suppress_vision_placeholders(policy)
        return policy

    def save_pretrained(self, directory: str | Path, *, manifest: Any = None) -> Path:
        """Write a loadable policy folder: model, processor, ``videoseek_policy.json``, model card.

        Args:
            directory: Target folder (created).
            manifest: Manifest to write (default: :attr:`manifest`, else the defaults named after
                this policy).

        Returns:
            The folder.
        """
        from agent_tools.policies.manifest import PolicyManifest, write_manifest

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.processor.save_pretrained(out)
        manifest = manifest if manifest is not None else self.manifest
        if manifest is None:
            manifest = PolicyManifest(
                name=self.name,
                max_new_tokens=self.max_new_tokens,
                max_side=self.max_side,
                tool_role=self.tool_role,
            )
        write_manifest(out, manifest)
        return out

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Save to a temporary folder and upload it (:func:`agent_tools.policies.hub.push_to_hub`).

        Args:
            repo_id: Target ``"org/name"``.
            **kwargs: :func:`~agent_tools.policies.hub.push_to_hub` arguments (``private``, ``token``,
                ``api``, ...).

        Returns:
            The upload's ``CommitInfo``.
        """
        import tempfile

        from agent_tools.policies.hub import push_to_hub

        with tempfile.TemporaryDirectory(prefix="videoseek-push-") as tmp:
            self.save_pretrained(tmp)
            return push_to_hub(tmp, repo_id, **kwargs)

    def build_inputs(self, messages: list[ChatMessage]) -> Any:
        """Chat template + processor: the model inputs for a prepared conversation."""
        templated, images = split_images(messages)
        text = self.processor.apply_chat_template(templated, tokenize=False, add_generation_prompt=True)
        if self.text_only:  # a tokenizer, no image processor (prepare sent no image parts)
            return self.processor(text=[text], add_special_tokens=False, return_tensors="pt").to(self.model.device)
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
        return inputs.to(self.model.device)

    def _generate_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=self.do_sample)
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        if self.stop_strings:
            kwargs.update(stop_strings=list(self.stop_strings), tokenizer=self.tokenizer)
        kwargs.update(self.generation_kwargs)
        return kwargs

    def generate_batch(self, conversations: Sequence[list[ChatMessage]], max_new_tokens: int) -> list[Generation]:
        """One ``generate`` call for several prepared conversations (left-padded); one :class:`Generation` each.

        Greedy decoding gives each row the turn :meth:`_generate` gives it alone, up to float
        rounding in the padded attention. :class:`~agent_tools.policies.batching.BatchedPolicy`
        feeds it the turns of concurrent episodes.

        Args:
            conversations: Conversations as :meth:`Policy.prepare` returns them.
            max_new_tokens: Token budget of every row.

        Returns:
            The generations, in the order of ``conversations``.

        Raises:
            InvalidArgumentError: On an empty batch.
        """
        import torch

        if not conversations:
            raise InvalidArgumentError("generate_batch needs at least one conversation")
        if len(conversations) == 1:
            return [self._generate(list(conversations[0]), max_new_tokens)]
        texts, images = [], []
        for messages in conversations:
            templated, imgs = split_images(messages)
            texts.append(self.processor.apply_chat_template(templated, tokenize=False, add_generation_prompt=True))
            images.extend(imgs)
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"  # generation continues every row from its last token
        try:
            if self.text_only:
                inputs = self.processor(text=texts, add_special_tokens=False, padding=True, return_tensors="pt")
            else:
                inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        finally:
            self.tokenizer.padding_side = side
        inputs = inputs.to(self.model.device)
        kwargs = self._generate_kwargs(max_new_tokens)
        if self.tokenizer.pad_token_id is not None:
            kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        seconds = time.perf_counter() - t0
        width = int(inputs["input_ids"].shape[1])
        prompt_lens = inputs["attention_mask"].sum(dim=1).tolist()
        eos_ids = self._eos_ids() | ({kwargs["pad_token_id"]} if "pad_token_id" in kwargs else set())
        gens = []
        for row, n_prompt in zip(out[:, width:].tolist(), prompt_lens):
            # a finished row is padded to the batch's length: keep up to its first end token
            cut = next((i for i, t in enumerate(row) if t in eos_ids), None)
            ids = row if cut is None else row[: cut + 1]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if cut is not None and self.stop_strings and text.rstrip().endswith(tuple(self.stop_strings)):
                ids = ids[:-1]  # ended by a stop string: the end token is padding, not generated
            finish = "stop" if (ids and ids[-1] in eos_ids) or len(ids) < max_new_tokens else "length"
            gens.append(Generation(text=text, completion_ids=ids, prompt_tokens=int(n_prompt),
                                   completion_tokens=len(ids), finish_reason=finish, seconds=seconds))
        return gens

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()

    def _generate(self, messages: list[ChatMessage], max_new_tokens: int) -> Generation:
        import torch

        inputs = self.build_inputs(messages)
        kwargs = self._generate_kwargs(max_new_tokens)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        seconds = time.perf_counter() - t0
        n_prompt = int(inputs["input_ids"].shape[1])
        ids = out[0, n_prompt:].tolist()
        eos_ids = self._eos_ids()
        finish = "stop" if (ids and ids[-1] in eos_ids) or len(ids) < max_new_tokens else "length"
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return Generation(
            text=text,
            completion_ids=ids,
            prompt_tokens=n_prompt,
            completion_tokens=len(ids),
            finish_reason=finish,
            seconds=seconds,
        )
