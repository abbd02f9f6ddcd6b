"""Hugging Face Hub conventions for policies: hub ids, base-model manifests, model cards, push.

- :func:`is_hub_id` - ``"org/name"`` that is not a local path.
- :func:`snapshot` - the local snapshot folder of a hub repository (``huggingface_hub.snapshot_download``:
  the cache, ``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and tokens work as everywhere else).
- :func:`base_model_manifest` - the manifest given to a base VLM that has no ``videoseek_policy.json``
  (an untuned model: it follows the protocol from the system prompt, it was not trained on it).
- :func:`model_card` / :func:`write_model_card` - the ``README.md`` model card of a checkpoint
  (``huggingface_hub.ModelCard`` with ``ModelCardData``: base model, license, tags ``video-search``,
  the training recipe, the ``trained`` flag). :func:`~agent_tools.policies.manifest.write_manifest`
  writes one beside every manifest.
- :func:`push_to_hub` - validate a checkpoint folder, refresh its card, ``HfApi.create_repo`` +
  ``HfApi.upload_folder``.

Why not ``huggingface_hub.ModelHubMixin``: a policy folder *is* a transformers ``save_pretrained``
folder (its ``config.json`` is the model's); the mixin writes its own ``config.json`` from the
constructor arguments, which would overwrite it. The folder layout stays transformers', and the
Hub calls are the library's.

Usage::

    from agent_tools.policies import load_policy
    policy = load_policy("Qwen/Qwen2.5-VL-7B-Instruct")        # base VLM: default manifest, warned
    from agent_tools.policies.hub import push_to_hub
    push_to_hub("runs/grpo/checkpoint-500", "me/videoseek-grpo-7b", private=True)
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Optional

from agent_tools import protocol
from agent_tools.policies.manifest import MANIFEST_NAME, PolicyLoadError, PolicyManifest, read_manifest

__all__ = [
    "MODEL_CARD_NAME",
    "CARD_MARKER",
    "SNAPSHOT_PATTERNS",
    "is_hub_id",
    "snapshot",
    "base_model_manifest",
    "model_card",
    "write_model_card",
    "push_to_hub",
]

log = logging.getLogger("agent_tools.policies")

MODEL_CARD_NAME = "README.md"
#: First line of the cards this module writes; a README without it is the user's and is kept.
CARD_MARKER = "<!-- videoseek: generated model card; edit freely, delete this line to keep edits -->"
#: Files fetched from a hub repository (weights as safetensors, configs, tokenizer, template, card).
SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken", "README.md"]
TRAINING_CONFIG_NAME = "training_config.json"

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_hub_id(source: Any) -> bool:
    """True for ``"org/name"`` strings that do not name an existing local path."""
    text = str(source)
    return bool(_HUB_ID.match(text)) and not Path(text).expanduser().exists() and ".." not in text


def snapshot(repo_id: str, *, revision: Optional[str] = None, token: Any = None) -> Path:
    """The local folder of a hub repository's snapshot (downloaded or from the cache).

    Args:
        repo_id: ``"org/name"``.
        revision: Branch, tag or commit (default ``main``).
        token: Hub token (default: the logged-in one, ``HF_TOKEN``).

    Returns:
        The snapshot folder.

    Raises:
        PolicyLoadError: If the repository is unknown, gated, or neither reachable nor cached.
    """
    import httpx
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        path = snapshot_download(repo_id, revision=revision, token=token, allow_patterns=SNAPSHOT_PATTERNS)
    except (HfHubHTTPError, OSError, ValueError, httpx.HTTPError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolicyLoadError(
            f"cannot get the Hugging Face model {repo_id!r}"
            + (f" at revision {revision!r}" if revision else "")
            + f": {first} (without network it must already be in the hub cache, HF_HUB_CACHE; gated "
            "models need `hf auth login`)"
        ) from None
    return Path(path)


def base_model_manifest(name: str) -> PolicyManifest:
    """The manifest of a base VLM loaded without ``videoseek_policy.json``.

    It runs the current protocol (tools, prompt format) with tool results as user turns (every
    chat template has a user role), and says in ``notes`` that the model was not tuned for search.

    Args:
        name: The model's name (hub id or folder).

    Returns:
        The manifest (``trained=True``: real weights, but untuned for videoseek).
    """
    return PolicyManifest(
        backend="transformers",
        name=name,
        trained=True,
        tool_schema=[protocol.SEEK_TOOL],
        tool_role="user",
        notes=(
            "untuned base model: no videoseek_policy.json, so videoseek's default manifest is used; the "
            "model follows the search protocol from its system prompt but was not trained on it"
        ),
    )


def _training_config(directory: Path) -> dict[str, Any]:
    path = directory / TRAINING_CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def model_card(
    manifest: PolicyManifest,
    *,
    base_model: Optional[str] = None,
    recipe: Optional[str] = None,
    license: str = "apache-2.0",
    training_config: Optional[dict[str, Any]] = None,
    repo_id: Optional[str] = None,
) -> Any:
    """The model card of a policy checkpoint.

    Args:
        manifest: The checkpoint's manifest.
        base_model: Hub id of the model it was trained from (default: the manifest's
            ``base_model`` extra field, else the training config's ``model`` / ``base_model``).
        recipe: Training recipe (default: the training config's ``trainer`` and the manifest notes).
        license: License id for the metadata (the base model's license may be stricter).
        training_config: ``training_config.json`` contents, shown as the recipe's settings.
        repo_id: Hub id, used in the loading example (default: a local folder).

    Returns:
        A ``huggingface_hub.ModelCard``.
    """
    from huggingface_hub import ModelCard, ModelCardData

    cfg = dict(training_config or {})
    extra = manifest.model_extra or {}
    base = base_model or extra.get("base_model") or cfg.get("base_model") or cfg.get("model")
    base = base if isinstance(base, str) and is_hub_id(base) else None
    trainer = recipe or (f"training.{cfg['trainer']}" if cfg.get("trainer") else None)
    tags = ["video-search", "videoseek", "video-question-answering", "agent", "tool-use"]
    if not manifest.trained:
        tags.append("untrained")
    data = ModelCardData(
        base_model=base,
        license=license,
        library_name="transformers" if manifest.backend == "transformers" else None,
        pipeline_tag="image-text-to-text",
        tags=tags,
        model_name=manifest.name,
    )
    load = repo_id or "path/to/this/folder"
    tool_names = ", ".join(f"`{t.get('function', t).get('name', '?')}`" for t in manifest.tool_schema)
    lines = [
        CARD_MARKER,
        "",
        f"# {manifest.name or 'videoseek policy'}",
        "",
        (
            "A long-video search policy for [videoseek](https://github.com/videoseek/videoseek): it "
            "answers questions about a video by calling `seek_video_frames` (text query + time window "
            "-> frames with timestamps) until the frames support an answer."
        ),
        "",
    ]
    if not manifest.trained:
        lines += [
            (
                "> **Warning: untrained.** This checkpoint has random (or barely trained) weights; it "
                "exists to test the machinery. Its turns are noise."
            ),
            "",
        ]
    if manifest.notes and manifest.notes.startswith("untuned base model"):
        lines += ["> This is an untuned base model run with videoseek's default manifest.", ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from agent_tools.policies import load_policy",
        f'policy = load_policy("{load}")',
        "```",
        "",
        "```bash",
        f'videoseek ask video.mp4 "What happens after the goal?" --policy {load}',
        "```",
        "",
        "## Training",
        "",
        f"- recipe: {trainer or 'not recorded'}",
        f"- base model: {base or 'not recorded'}",
        f"- trained: {str(manifest.trained).lower()}",
    ]
    if manifest.notes:
        lines.append(f"- notes: {manifest.notes}")
    if cfg:
        shown = {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, bool)) and k != "trainer"}
        if shown:
            lines += ["", "| setting | value |", "| --- | --- |"]
            lines += [f"| {k} | {v} |" for k, v in sorted(shown.items())]
    lines += [
        "",
        "## Protocol",
        "",
        f"- prompt format: `{manifest.prompt_format}` (manifest: `{MANIFEST_NAME}`)",
        f"- tools: {tool_names}",
        (
            f"- tool results as: `{manifest.tool_role}` turns; frames at most {manifest.max_side} px; "
            f"{manifest.max_new_tokens} tokens per turn"
        ),
    ]
    if manifest.encoder:
        lines.append(f"- search encoder used in training: `{manifest.encoder}`")
    if manifest.soft_refinement:
        lines.append("- provides soft query refinement (`sqr_projector.safetensors`)")
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
    return ModelCard(content)


def write_model_card(
    directory: str | Path, manifest: Optional[PolicyManifest] = None, **kwargs: Any
) -> Optional[Path]:
    """Write ``README.md`` (the model card) into a checkpoint folder, unless the user wrote their own.

    A ``README.md`` that does not start with :data:`CARD_MARKER` is left alone.

    Args:
        directory: The checkpoint folder.
        manifest: Its manifest (default: read from the folder).
        **kwargs: :func:`model_card` arguments (``training_config`` defaults to the folder's
            ``training_config.json``).

    Returns:
        The card's path, or None when a user-written card was kept.
    """
    d = Path(directory)
    path = d / MODEL_CARD_NAME
    if path.is_file() and CARD_MARKER not in path.read_text(errors="replace"):
        return None
    manifest = manifest if manifest is not None else read_manifest(d)
    kwargs.setdefault("training_config", _training_config(d))
    model_card(manifest, **kwargs).save(path)
    return path


def push_to_hub(
    directory: str | Path,
    repo_id: str,
    *,
    private: Optional[bool] = None,
    token: Any = None,
    revision: Optional[str] = None,
    commit_message: Optional[str] = None,
    create_pr: bool = False,
    license: str = "apache-2.0",
    base_model: Optional[str] = None,
    api: Any = None,
) -> Any:
    """Upload a checkpoint folder to the Hub (validated manifest, refreshed model card).

    Args:
        directory: A policy folder (``save_pretrained`` files + ``videoseek_policy.json``).
        repo_id: Target ``"org/name"`` (created if missing).
        private: Create the repository private.
        token: Hub token (default: the logged-in one).
        revision: Branch to push to.
        commit_message: Commit message (default names the policy).
        create_pr: Open a pull request instead of committing.
        license: License id in the card's metadata.
        base_model: Base model hub id for the card.
        api: An ``huggingface_hub.HfApi`` (tests pass a mock).

    Returns:
        The ``CommitInfo`` of the upload.

    Raises:
        PolicyLoadError: If the folder is not a valid policy or ``repo_id`` is not ``org/name``.
    """
    d = Path(directory).expanduser()
    manifest = read_manifest(d)
    if not _HUB_ID.match(repo_id):
        raise PolicyLoadError(f"repo_id must look like 'org/name', got {repo_id!r}")
    if manifest.backend == "transformers" and not (d / "config.json").is_file():
        raise PolicyLoadError(f"{str(d)!r} has no config.json: save the model with save_pretrained first")
    write_model_card(d, manifest, repo_id=repo_id, license=license, base_model=base_model)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(d),
        repo_type="model",
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message or f"Upload videoseek policy {manifest.name or d.name}",
        ignore_patterns=["*.lock", ".cache/*", "checkpoint-*/*", "optimizer.pt", "rng_state*.pth"],
    )
