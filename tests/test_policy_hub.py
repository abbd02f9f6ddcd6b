"""Hugging Face conventions: hub ids in ``load_policy``, base-model manifests, model cards, push.

The hub is a fake cache in ``tmp_path`` (layout ``models--org--name/snapshots/<rev>/`` plus
``refs/main``) holding the tiny UNTRAINED Qwen2.5-VL, read with ``HF_HUB_OFFLINE=1``: no network.
"""

from __future__ import annotations

import json
import logging
import shutil
from unittest import mock

import pytest

from agent_tools import protocol
from agent_tools.policies import (
    MANIFEST_NAME,
    PolicyLoadError,
    TransformersPolicy,
    load_policy,
    read_manifest,
)
from agent_tools.policies.hub import CARD_MARKER, is_hub_id, push_to_hub, write_model_card
from tests.agent_fakes import FakeSearcher, tiny_policy, tiny_policy_path

huggingface_hub = pytest.importorskip("huggingface_hub")
hf_constants = pytest.importorskip("huggingface_hub.constants")

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """A fake, offline hub cache; returns ``add(repo_id, keep_manifest)`` that stores the tiny policy."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these once, at import: set the module's values too
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)

    def add(repo_id: str, keep_manifest: bool = False):
        org, name = repo_id.split("/")
        repo = cache / f"models--{org}--{name}"
        snap = repo / "snapshots" / REV
        shutil.copytree(tiny_policy_path(), snap)
        (snap / "README.md").unlink(missing_ok=True)
        if not keep_manifest:
            (snap / MANIFEST_NAME).unlink()
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(REV)
        return snap

    return add


def test_hub_ids_are_told_apart_from_paths(tmp_path, monkeypatch):
    assert is_hub_id("Qwen/Qwen2.5-VL-7B-Instruct") and is_hub_id("org/name")
    for s in ("runs", "/abs/ckpt", "a/b/c", "http://x/v1", "../x", str(tmp_path)):
        assert not is_hub_id(s)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "local").mkdir(parents=True)
    assert not is_hub_id("org/local")  # an existing relative folder wins


def test_base_vlm_from_the_hub_cache_gets_a_default_manifest_and_generates(offline_hub, caplog):
    snap = offline_hub("org/name")
    with caplog.at_level(logging.WARNING, logger="agent_tools.policies"):
        policy = load_policy("org/name", device="cpu", max_new_tokens=4)
    assert "untuned base model" in caplog.text and "org/name" in caplog.text
    assert isinstance(policy, TransformersPolicy)
    m = policy.manifest
    assert m.name == "org/name" and m.notes.startswith("untuned base model")
    assert m.tool_schema == [protocol.SEEK_TOOL] and m.prompt_format == protocol.PROMPT_FORMAT
    assert m.tool_role == policy.tool_role == "user"  # every chat template has a user role
    assert str(policy.model.config._name_or_path).startswith(str(snap))
    s = FakeSearcher()
    convo = [
        {"role": "system", "content": protocol.system_prompt()},
        {
            "role": "user",
            "content": [
                {"type": "frame", "video": "v.mp4", "timestamp": 3.0},
                {"type": "text", "text": "What is shown?"},
            ],
        },
    ]
    gen = policy.generate_details(convo, frames=s.frames)
    assert 1 <= gen.completion_tokens <= 4 and gen.prompt_tokens > 20
    assert s.frame_calls[0]["timestamps"] == [3.0]


def test_hub_repo_with_a_manifest_uses_it(offline_hub, caplog):
    offline_hub("me/videoseek-tiny", keep_manifest=True)
    with caplog.at_level(logging.WARNING, logger="agent_tools.policies"):
        policy = load_policy("me/videoseek-tiny", device="cpu")
    assert "untuned" not in caplog.text
    assert policy.manifest.trained is False and policy.manifest.name == read_manifest(tiny_policy_path()).name


def test_unknown_hub_ids_and_local_folders_without_manifest_fail_clearly(offline_hub, tmp_path):
    with pytest.raises(
        PolicyLoadError, match=r"cannot get the Hugging Face model 'org/missing'.*no local folder"
    ):
        load_policy("org/missing")
    d = tmp_path / "base"
    shutil.copytree(tiny_policy_path(), d)
    (d / MANIFEST_NAME).unlink()
    with pytest.raises(PolicyLoadError, match="pass allow_base=True"):
        load_policy(d)
    assert load_policy(d, allow_base=True, device="cpu").manifest.notes.startswith("untuned base model")


def test_checkpoints_carry_a_model_card(tmp_path):
    card_path = tiny_policy_path() / "README.md"
    card = huggingface_hub.ModelCard.load(card_path)
    assert "video-search" in card.data.tags and "untrained" in card.data.tags
    assert card.data.license == "apache-2.0" and card.data.pipeline_tag == "image-text-to-text"
    assert "- trained: false" in card.text and "Warning: untrained" in card.text
    assert f"`{protocol.PROMPT_FORMAT}`" in card.text and "`seek_video_frames`" in card.text
    # a trained checkpoint with its training config: base model and recipe in the card
    d = tmp_path / "ckpt"
    shutil.copytree(tiny_policy_path(), d)
    data = json.loads((d / MANIFEST_NAME).read_text())
    data.update(trained=True, name="videoseek-grpo-tiny", notes="trained by training.grpo from tiny")
    (d / MANIFEST_NAME).write_text(json.dumps(data))
    (d / "training_config.json").write_text(
        json.dumps({"trainer": "grpo", "model": "Qwen/Qwen2.5-VL-7B-Instruct", "learning_rate": 1e-6})
    )
    write_model_card(d)
    card = huggingface_hub.ModelCard.load(d / "README.md")
    assert card.data.base_model == "Qwen/Qwen2.5-VL-7B-Instruct" and "untrained" not in card.data.tags
    assert "- recipe: training.grpo" in card.text and "| learning_rate | 1e-06 |" in card.text
    assert "- trained: true" in card.text and "Warning" not in card.text
    # a README the user wrote is never overwritten
    (d / "README.md").write_text("# my own card\n")
    assert write_model_card(d) is None and (d / "README.md").read_text() == "# my own card\n"


def test_push_to_hub_validates_writes_the_card_and_uploads_with_hfapi(tmp_path):
    d = tmp_path / "ckpt"
    shutil.copytree(tiny_policy_path(), d)
    (d / "README.md").unlink()
    api = mock.create_autospec(huggingface_hub.HfApi, instance=True)
    uploaded = {}
    api.upload_folder.side_effect = lambda **kw: (
        uploaded.update(kw, files=sorted(p.name for p in (tmp_path / "ckpt").iterdir())) or "commit-info"
    )
    out = push_to_hub(d, "me/videoseek-tiny", private=True, api=api)
    assert out == "commit-info"
    api.create_repo.assert_called_once_with(
        "me/videoseek-tiny", private=True, exist_ok=True, repo_type="model"
    )
    assert uploaded["repo_id"] == "me/videoseek-tiny" and uploaded["folder_path"] == str(d)
    assert {"README.md", MANIFEST_NAME, "config.json"} <= set(uploaded["files"])
    card = (d / "README.md").read_text()
    assert CARD_MARKER in card and 'load_policy("me/videoseek-tiny")' in card
    with pytest.raises(PolicyLoadError, match="repo_id must look like 'org/name'"):
        push_to_hub(d, "no-slash", api=api)
    (d / MANIFEST_NAME).unlink()
    with pytest.raises(PolicyLoadError, match="has no videoseek_policy.json"):
        push_to_hub(d, "me/x", api=api)
    assert api.upload_folder.call_count == 1  # nothing invalid was uploaded


def test_transformers_policy_push_to_hub_uploads_a_loadable_folder(tmp_path):
    policy = tiny_policy()
    api = mock.create_autospec(huggingface_hub.HfApi, instance=True)
    seen = {}

    def upload(**kw):
        copy = tmp_path / "uploaded"
        shutil.copytree(kw["folder_path"], copy)  # what the hub would receive
        seen["dir"] = copy
        return "ok"

    api.upload_folder.side_effect = upload
    assert policy.push_to_hub("me/tiny", api=api) == "ok"
    again = load_policy(seen["dir"], device="cpu")
    assert again.manifest.trained is False and again.manifest.name == policy.manifest.name
    assert (seen["dir"] / "README.md").is_file()
