"""Encoder registry and the open_clip wrapper (the untrained tiny model; real weights are absent here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent_tools.encoders import OpenClipEncoder, get_spec, list_encoders, load_encoder, weights_status
from agent_tools.encoders.registry import EncoderSpec, register_encoder
from agent_tools.errors import EncoderUnavailableError, InvalidArgumentError


def test_registry_lists_the_documented_encoders():
    specs = {s.name: s for s in list_encoders()}
    assert {"siglip-so400m-384", "siglip-b16", "clip-b32-openai", "tiny-untrained"} <= set(specs)
    assert specs["siglip-so400m-384"].model == "ViT-SO400M-14-SigLIP-384"
    assert specs["siglip-b16"].model == "ViT-B-16-SigLIP" and specs["siglip-b16"].pretrained == "webli"
    assert specs["clip-b32-openai"].pretrained == "openai"
    assert specs["tiny-untrained"].trained is False
    assert all(s.trained for n, s in specs.items() if n != "tiny-untrained")


def test_default_encoder_is_a_trained_one():
    from agent_tools.config import Settings

    assert get_spec(Settings().encoder).trained


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(EncoderUnavailableError, match="registered encoders: .*siglip-b16.*tiny-untrained"):
        get_spec("siglip-xxl")


def test_untrained_inline_config_must_say_so():
    with pytest.raises(ValueError, match="trained"):
        EncoderSpec(name="x", model_cfg={"embed_dim": 8}, trained=True)


def test_missing_weights_say_how_to_get_them(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights_status(get_spec("siglip-b16"))[0] is False
    with pytest.raises(EncoderUnavailableError) as err:
        OpenClipEncoder(get_spec("siglip-b16"), device="cpu")
    msg = str(err.value)
    assert "create_model_and_transforms('ViT-B-16-SigLIP', pretrained='webli')" in msg
    assert "tiny-untrained" in msg


def test_local_checkpoint_path_is_used(tmp_path):
    spec = EncoderSpec(name="local-b32", model="ViT-B-32", pretrained=str(tmp_path / "missing.pt"))
    assert spec.checkpoint_path == tmp_path / "missing.pt"
    assert weights_status(spec) == (False, f"checkpoint {tmp_path / 'missing.pt'} (missing)")


def test_tiny_encoder_shapes_and_norms(tiny_encoder):
    assert tiny_encoder.trained is False and tiny_encoder.dim == 64
    assert tiny_encoder.device.type == "cpu" and tiny_encoder.dtype == torch.float32
    imgs = np.random.default_rng(0).integers(0, 256, (5, 90, 120, 3), dtype=np.uint8)
    v = tiny_encoder.encode_images(imgs, batch_size=2)
    assert v.shape == (5, 64) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    t = tiny_encoder.encode_text(["a red square", "a blue circle"])
    assert t.shape == (2, 64) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert not np.allclose(t[0], t[1])


def test_tiny_encoder_is_deterministic_across_instances(tiny_encoder):
    other = OpenClipEncoder(get_spec("tiny-untrained"), device="cpu")
    assert other is not tiny_encoder and other.cache_key == tiny_encoder.cache_key
    np.testing.assert_allclose(other.encode_text(["a dog"]), tiny_encoder.encode_text(["a dog"]), atol=1e-6)


def test_pil_and_array_inputs_agree(tiny_encoder):
    from PIL import Image

    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    a = tiny_encoder.encode_images(arr[None])
    b = tiny_encoder.encode_images([Image.fromarray(arr)])
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_image_input(tiny_encoder):
    with pytest.raises(InvalidArgumentError, match="N x H x W x 3"):
        tiny_encoder.encode_images(np.zeros((2, 8, 8), dtype=np.uint8)[..., None].repeat(2, -1))


def test_load_encoder_caches_per_process():
    assert load_encoder("tiny-untrained", device="cpu") is load_encoder("tiny-untrained", device="cpu")


def test_register_encoder_adds_a_variant():
    spec = get_spec("tiny-untrained").model_copy(update={"name": "tiny-untrained-seed7", "seed": 7})
    register_encoder(spec)
    enc = load_encoder("tiny-untrained-seed7", device="cpu")
    assert enc.cache_key != load_encoder("tiny-untrained", device="cpu").cache_key


# -- soft tokens (the Soft Query Refinement hook) -------------------------------------
def test_zero_soft_tokens_equal_plain_text_embedding(tiny_encoder):
    texts = ["a person opens the door", "dog", ""]
    plain = tiny_encoder.encode_text(texts)
    soft = tiny_encoder.encode_text_with_soft_tokens(texts, torch.zeros(0, tiny_encoder.text_width))
    np.testing.assert_allclose(soft.detach().numpy(), plain, atol=1e-6)


def test_soft_tokens_change_the_embedding_and_carry_gradients(tiny_encoder):
    soft = torch.randn(4, tiny_encoder.text_width, requires_grad=True)
    out = tiny_encoder.encode_text_with_soft_tokens(["a person opens the door"], soft)
    plain = torch.from_numpy(tiny_encoder.encode_text(["a person opens the door"]))
    assert out.shape == (1, tiny_encoder.dim)
    assert float((out.detach() * plain).sum()) < 0.9999
    out.sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_encoder.model.parameters())


def test_soft_tokens_per_query_and_long_queries(tiny_encoder):
    long = " ".join(["word"] * 40)  # fills the 16-token context: text before the soft tokens is dropped
    soft = torch.randn(2, 3, tiny_encoder.text_width)
    out = tiny_encoder.encode_text_with_soft_tokens(["short", long], soft)
    assert out.shape == (2, tiny_encoder.dim) and torch.isfinite(out).all()


def test_soft_tokens_wrong_width(tiny_encoder):
    with pytest.raises(InvalidArgumentError, match=r"\(K, 64\)"):
        tiny_encoder.encode_text_with_soft_tokens(["x"], torch.zeros(2, 7))
