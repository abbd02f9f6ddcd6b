"""Vision placeholders a policy generates must never reach the model again with the prompt's frames.

The failure this guards against (the Qwen3-VL-8B SQR recipe's dry run): the untrained policy's
verification reply held two ``<|image_pad|>`` ids; SQR appends the reply's ids to the prompt and
runs the model with the prompt's frames, and transformers' ``get_placeholder_mask`` refused
"Image features and image tokens do not match, tokens: 98, features: 96". TRL's GRPOTrainer
guards its own sampling the same way (``suppress_tokens = [image_token_id]`` in
``trl/trainer/grpo_trainer.py``, "A sampled image token would mismatch the image features").
"""

from __future__ import annotations

import pytest
import torch

from agent_tools.policies import load_policy
from agent_tools.policies.transformers_policy import append_token_ids
from agent_tools.policies.vision_tokens import (
    drop_vision_placeholders,
    placeholder_generation_kwargs,
    suppress_vision_placeholders,
    vision_placeholder_ids,
)
from tests.agent_fakes import tiny_policy_path

PLACEHOLDERS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


@pytest.fixture
def policy():
    return load_policy(tiny_policy_path(), device="cpu")


def _favour(policy, ids, boost=1e4):
    """Make the model's next-token logits prefer ``ids`` overwhelmingly (as a policy gone astray)."""
    head = policy.model.get_output_embeddings()

    def hook(_module, _inputs, out):
        out = out.clone()
        out[..., ids] += boost
        return out

    return head.register_forward_hook(hook)


def _verification(clip, frames=1):
    from agent_tools.graphs.corpus import verification_messages

    return verification_messages("a red square", str(clip), 2.0, 3.5, num_frames=frames)


def test_the_placeholder_ids_are_the_processors(policy):
    tok = policy.tokenizer
    assert vision_placeholder_ids(policy) == sorted(tok.convert_tokens_to_ids(t) for t in PLACEHOLDERS)
    assert vision_placeholder_ids(policy.model) == vision_placeholder_ids(policy)


def test_a_generated_image_pad_re_fed_with_the_frames_is_the_98_vs_96_error(policy, searcher, clip20):
    image_pad = policy.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    inputs = policy.build_inputs(policy.prepare(_verification(clip20), searcher.frames))
    n_features = int((inputs["input_ids"] == image_pad).sum())
    reply = policy.tokenizer("<answer>not_matched</answer>", add_special_tokens=False)["input_ids"]
    bad = append_token_ids(dict(inputs), [*reply[:2], image_pad, image_pad, *reply[2:]])
    with pytest.raises(ValueError, match=rf"tokens: {n_features + 2}, features: {n_features}"):
        policy.model(**bad)
    # the SQR/refiner path drops them: the re-fed reply is the text the graph saw
    from agent_tools.policies.soft_refine import refine_inputs
    from training.sqr import ensure_refine_token

    rid = ensure_refine_token(policy)
    fixed, n = refine_inputs(
        policy,
        _verification(clip20),
        searcher.frames,
        completion_ids=[*reply[:2], image_pad, image_pad, *reply[2:]],
        refine_id=rid,
    )
    assert fixed["input_ids"][0, -n:].tolist() == [*reply, rid]
    assert int((fixed["input_ids"] == image_pad).sum()) == n_features
    with torch.no_grad():
        policy.model(**fixed)  # no mismatch


def test_loaded_policies_never_sample_placeholders(policy):
    """``load_policy`` (TransformersPolicy.from_pretrained) bans them for every vision checkpoint."""
    banned = vision_placeholder_ids(policy)
    assert policy.generation_kwargs["suppress_tokens"] == banned
    handle = _favour(policy, banned)
    try:
        out = policy.generate_details([{"role": "user", "content": "hello"}], max_new_tokens=4).completion_ids
        assert out and not set(out) & set(banned)
    finally:
        handle.remove()


def test_suppression_keeps_a_policy_from_sampling_placeholders(policy):
    banned = vision_placeholder_ids(policy)
    policy.generation_kwargs.pop("suppress_tokens")  # undo the loader's ban to see the failure mode
    policy.model.generation_config.suppress_tokens = None
    handle = _favour(policy, banned)
    convo = [{"role": "user", "content": "hello"}]
    try:
        before = policy.generate_details(convo, max_new_tokens=4).completion_ids
        assert before and all(t in banned for t in before)  # the boosted model writes only placeholders
        assert suppress_vision_placeholders(policy) == banned
        after = policy.generate_details(convo, max_new_tokens=4).completion_ids
        assert after and not set(after) & set(banned)
    finally:
        handle.remove()
    assert policy.model.generation_config.suppress_tokens == banned  # saved with the checkpoint


def test_trl_generation_kwargs_for_transformers_and_vllm(policy):
    banned = vision_placeholder_ids(policy)
    assert placeholder_generation_kwargs(policy) == {"suppress_tokens": banned}
    # vLLM's SamplingParams has no suppress_tokens; a -100 logit bias bans a token there
    assert placeholder_generation_kwargs(policy, vllm=True) == {"logit_bias": {i: -100.0 for i in banned}}
    assert drop_vision_placeholders(policy, [7, banned[0], 8, banned[-1]]) == [7, 8]


def test_a_text_only_model_has_none():
    model = torch.nn.Linear(2, 2)
    assert vision_placeholder_ids(model) == [] and placeholder_generation_kwargs(model) == {}
    assert drop_vision_placeholders(model, [1, 2]) == [1, 2]
