"""Tiny, randomly initialised, UNTRAINED Qwen2.5-VL / Qwen3-VL policies, built offline for tests.

It exists so that the real code paths (processor, chat template, image tokens,
``generate``, ``save_pretrained``/``from_pretrained``, the manifest loader) run on a CPU
in well under a second, with no model hub. Its replies are noise: it never produces a
useful search or answer. It is never a default anywhere; callers name it explicitly.

- :func:`build_tiny_tokenizer` - a byte-level BPE trained with ``tokenizers`` on the
  project's own prompt texts, wrapped as a ``PreTrainedTokenizerFast`` with Qwen-style
  special tokens.
- :data:`TINY_CHAT_TEMPLATE` - a small Jinja chat template in the Qwen2-VL layout
  (``<|im_start|>role ... <|im_end|>``, images as ``<|vision_start|><|image_pad|><|vision_end|>``).
- :func:`build_tiny_processor`, :func:`build_tiny_model` - the real processor and model classes
  of the family (``"qwen2_5_vl"``, the default, or ``"qwen3_vl"``) at toy sizes.
- :func:`build_tiny_policy_dir` - writes model + processor + ``videoseek_policy.json``
  (``trained: false``) into a directory that :func:`agent_tools.policies.load_policy` loads.

Usage::

    from agent_tools.policies.tiny import build_tiny_policy_dir
    from agent_tools.policies import load_policy
    path = build_tiny_policy_dir("/tmp/tiny-untrained-policy")
    policy = load_policy(path)          # a TransformersPolicy over the untrained model
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from agent_tools import protocol

__all__ = [
    "FAMILIES",
    "TINY_POLICY_NAME",
    "TINY_CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_tokenizer",
    "build_tiny_processor",
    "build_tiny_model",
    "build_tiny_policy_dir",
]

#: Model families the tiny builder knows.
FAMILIES = ("qwen2_5_vl", "qwen3_vl")
#: Name recorded in the manifest; says loudly what this is.
TINY_POLICY_NAME = "tiny-untrained-qwen2.5-vl"
_NAMES = {"qwen2_5_vl": TINY_POLICY_NAME, "qwen3_vl": "tiny-untrained-qwen3-vl"}


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        from agent_tools.errors import InvalidArgumentError

        raise InvalidArgumentError(f"unknown tiny model family {family!r}; valid: {', '.join(FAMILIES)}")


SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

TINY_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}\n"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif part['type'] == 'video' -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)


def _training_texts() -> list[str]:
    """Sentences the tiny BPE is trained on: the protocol's own texts plus calls and answers."""
    texts = [
        protocol.system_prompt([protocol.SEEK_TOOL, protocol.MOMENT_TOOL]),
        protocol.user_prompt("What colour is the car that turns left?", 600.0, 8),
        protocol.search_response_text([12.5, 13.0, 47.5]),
        protocol.corrective_text("it has neither a <tool_call> nor an <answer> block"),
        protocol.VERIFY_SYSTEM_PROMPT,
        protocol.CORPUS_SYSTEM_PROMPT,
        protocol.budget_text(),
        "I don't know.",
    ]
    words = ["red car", "a dog runs", "person opens the door", "blue sky", "kitchen table", "green field"]
    for i, w in enumerate(words):
        t0, t1 = 10.0 * i, 10.0 * i + 35.5
        texts.append(
            f"<think>The preview does not show {w}; search for it.</think>"
            f'<tool_call>{{"name": "seek_video_frames", "arguments": {{"query": "{w}", '
            f'"start_time": {t0}, "end_time": {t1}, "num_frames": {i + 2}}}}}</tool_call>'
        )
        texts.append(f"<think>The frames at {t0}s show {w}.</think><answer>{w}</answer>")
        texts.append(f"<answer>matched</answer><start>{t0}</start><end>{t1}</end>")
        texts.append(f"<answer>not_matched</answer><query>{w} in the evening</query>")
    texts += [" ".join(str(n) for n in range(0, 100)), "0.1 0.5 1.0 2.5 12.5s 13.0s A B C D E"]
    return texts * 3


def build_tiny_tokenizer():
    """Train a byte-level BPE offline and wrap it as a ``PreTrainedTokenizerFast``.

    Returns:
        The tokenizer, with the chat template set and ``<|im_end|>`` as EOS.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_training_texts(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tok.chat_template = TINY_CHAT_TEMPLATE
    return tok


def build_tiny_processor(tokenizer=None, *, max_pixels: int = 112 * 112, family: str = "qwen2_5_vl"):
    """The family's real processor over the tiny tokenizer (small image budget).

    Args:
        tokenizer: A tokenizer from :func:`build_tiny_tokenizer` (built if omitted).
        max_pixels: Image pixel budget of the image processor.
        family: ``"qwen2_5_vl"`` (14-pixel patches) or ``"qwen3_vl"`` (16-pixel patches).

    Returns:
        The processor.

    Raises:
        InvalidArgumentError: On an unknown family.
    """
    from transformers import Qwen2VLImageProcessor

    _check_family(family)
    tok = tokenizer if tokenizer is not None else build_tiny_tokenizer()
    if family == "qwen3_vl":
        from transformers import Qwen3VLProcessor
        from transformers.models.qwen3_vl import Qwen3VLVideoProcessor

        return Qwen3VLProcessor(
            image_processor=Qwen2VLImageProcessor(
                patch_size=16, merge_size=2, min_pixels=64 * 64, max_pixels=max_pixels
            ),
            tokenizer=tok,
            video_processor=Qwen3VLVideoProcessor(),
            chat_template=TINY_CHAT_TEMPLATE,
        )
    from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=TINY_CHAT_TEMPLATE,
    )


def build_tiny_model(tokenizer, *, seed: int = 0, family: str = "qwen2_5_vl"):
    """A ~0.3 M-parameter model of the family with random weights, sized to the tokenizer.

    Args:
        tokenizer: The tokenizer whose vocabulary and special ids the config uses.
        seed: Torch seed for the random init (deterministic weights).
        family: ``"qwen2_5_vl"`` or ``"qwen3_vl"``.

    Returns:
        A ``Qwen2_5_VLForConditionalGeneration`` / ``Qwen3VLForConditionalGeneration`` in eval mode.

    Raises:
        InvalidArgumentError: On an unknown family.
    """
    import torch

    _check_family(family)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    token_ids = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=pad,
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

        config = Qwen3VLConfig(
            text_config=dict(
                text,
                head_dim=16,
                rope_parameters={
                    "rope_type": "default",
                    "mrope_section": [2, 3, 3],
                    "rope_theta": 1e4,
                    "mrope_interleaved": True,
                },
            ),
            vision_config=dict(
                vision, patch_size=16, num_position_embeddings=64, deepstack_visual_indexes=[0]
            ),
            **token_ids,
        )
        cls = Qwen3VLForConditionalGeneration
    else:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        config = Qwen2_5_VLConfig(
            text_config=dict(
                text,
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4},
                bos_token_id=pad,
                eos_token_id=eos,
            ),
            vision_config=dict(vision, patch_size=14, window_size=56, fullatt_block_indexes=[1]),
            eos_token_id=eos,
            pad_token_id=pad,
            **token_ids,
        )
        cls = Qwen2_5_VLForConditionalGeneration
    torch.manual_seed(seed)
    model = cls(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    return model.eval()


def build_tiny_policy_dir(
    directory: str | Path,
    *,
    encoder: str = "tiny-untrained",
    seed: int = 0,
    max_new_tokens: int = 24,
    max_side: int = 112,
    family: str = "qwen2_5_vl",
) -> Path:
    """Write a complete, loadable, UNTRAINED policy checkpoint.

    Args:
        directory: Target folder (created; existing files are overwritten).
        encoder: Encoder name recorded in the manifest.
        seed: Seed of the random weights.
        max_new_tokens: Default tokens per turn recorded in the manifest.
        max_side: Frame size the policy asks for.
        family: ``"qwen2_5_vl"`` or ``"qwen3_vl"``.

    Returns:
        The directory.

    Raises:
        InvalidArgumentError: On an unknown family.
    """
    from agent_tools.policies.manifest import PolicyManifest, write_manifest

    _check_family(family)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tiny_tokenizer()
    processor = build_tiny_processor(tok, family=family)
    model = build_tiny_model(tok, seed=seed, family=family)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_manifest(
        out,
        PolicyManifest(
            backend="transformers",
            name=_NAMES[family],
            trained=False,
            encoder=encoder,
            max_new_tokens=max_new_tokens,
            max_side=max_side,
            notes="Random weights for tests; never a real policy.",
        ),
    )
    return out


def _main(argv: Optional[list[str]] = None) -> None:  # pragma: no cover - convenience
    import sys

    args = argv or sys.argv[1:] or ["tiny-untrained-policy"]
    print(build_tiny_policy_dir(args[0], family=args[1] if len(args) > 1 else "qwen2_5_vl"))


if __name__ == "__main__":  # pragma: no cover
    _main()
