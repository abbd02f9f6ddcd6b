"""Policy checkpoints: a ``save_pretrained`` directory plus ``videoseek_policy.json``.

The manifest records what the policy was trained against, so a checkpoint is never run
with prompts or tools it has not seen:

- ``format_version`` - manifest format (this code reads version 1);
- ``backend`` - ``"transformers"`` (weights in the folder) or ``"openai"`` (a served model);
- ``tool_schema`` - the tool schemas of the training prompts (must match :mod:`agent_tools.protocol`);
- ``prompt_format`` - :data:`agent_tools.protocol.PROMPT_FORMAT`;
- ``encoder`` - the frame/text encoder the searches used in training;
- ``max_new_tokens``, ``max_side``, ``tool_role``, ``soft_refinement``, ``trained``;
- ``max_turns``, ``preview_frames`` - the turn budget and preview the policy was trained with
  (``videoseek ask`` uses them and ``max_new_tokens`` unless flags override).

Names: :class:`PolicyManifest`, :data:`MANIFEST_NAME`, :func:`read_manifest`,
:func:`write_manifest`, :func:`validate_manifest`, :func:`load_policy`, :class:`PolicyLoadError`.

Usage::

    from agent_tools.policies import load_policy
    policy = load_policy("runs/grpo/checkpoint-500")          # transformers weights + manifest
    policy = load_policy("http://localhost:8000/v1", model="videoseek-7b")   # `vllm serve`
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_tools import protocol
from agent_tools.errors import VideoseekError

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "SUPPORTED_PROMPT_FORMATS",
    "PolicyLoadError",
    "PolicyManifest",
    "read_manifest",
    "write_manifest",
    "validate_manifest",
    "load_policy",
]

MANIFEST_NAME = "videoseek_policy.json"
MANIFEST_VERSION = 1
SUPPORTED_PROMPT_FORMATS = (protocol.PROMPT_FORMAT,)


class PolicyLoadError(VideoseekError):
    """A policy directory or URL that cannot be loaded (says what is missing or valid)."""


class PolicyManifest(BaseModel):
    """Contents of ``videoseek_policy.json``."""

    model_config = ConfigDict(extra="allow")

    format_version: int = MANIFEST_VERSION
    backend: Literal["transformers", "openai"] = "transformers"
    name: Optional[str] = Field(None, description="Model name, for display.")
    trained: bool = Field(True, description="False for random-weight test policies.")
    tool_schema: list[dict[str, Any]] = Field(default_factory=lambda: [protocol.SEEK_TOOL])
    prompt_format: str = protocol.PROMPT_FORMAT
    encoder: Optional[str] = Field(None, description="Encoder the policy's searches were trained with.")
    max_new_tokens: int = Field(256, ge=1, description="Tokens per turn.")
    max_turns: Optional[int] = Field(
        None, ge=1, description="Turn budget the policy was trained with (`videoseek ask` default)."
    )
    preview_frames: Optional[int] = Field(
        None, ge=0, description="Preview frames in the first user turn during training (`ask` default)."
    )
    max_side: Optional[int] = Field(448, ge=16, description="Longest frame side given to the model.")
    tool_role: Literal["tool", "user"] = "tool"
    soft_refinement: bool = Field(False, description="The checkpoint provides soft query refinement.")
    observation: Literal["images", "text"] = Field(
        "images",
        description="How frames reach the policy: as images, or as text lines (timestamp, search score, "
        "the encoder's zero-shot tags; agent_tools.observations) for text-only models.",
    )
    tag_vocabulary: Optional[list[str]] = Field(
        None,
        description="Text observations: the vocabulary of the zero-shot frame tags the policy was trained "
        "on (None: timestamps and scores only).",
    )
    tag_top_k: int = Field(1, ge=1, description="Text observations: tags per frame.")
    base_url: Optional[str] = Field(None, description="openai backend: server URL (…/v1).")
    model: Optional[str] = Field(None, description="openai backend: served model name.")
    notes: Optional[str] = None


def _schema_signature(tool: dict[str, Any]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    fn = tool.get("function", tool)
    params = fn.get("parameters", {}) or {}
    return (
        str(fn.get("name")),
        tuple(sorted((params.get("properties") or {}).keys())),
        tuple(sorted(params.get("required") or [])),
    )


def validate_manifest(manifest: PolicyManifest, where: str = "manifest") -> PolicyManifest:
    """Check a manifest against what this version of videoseek can run.

    Args:
        manifest: The parsed manifest.
        where: Name used in error messages (the file).

    Returns:
        The same manifest.

    Raises:
        PolicyLoadError: On an unknown format version or prompt format, a tool schema that
            differs from :mod:`agent_tools.protocol`'s (names, properties or required fields), an
            openai backend without ``base_url``, soft refinement on a non-transformers backend,
            or a tag vocabulary that is empty, repeats a tag or comes without text observations.
    """
    if manifest.format_version != MANIFEST_VERSION:
        raise PolicyLoadError(
            f"{where}: format_version {manifest.format_version} is not supported; this videoseek "
            f"reads version {MANIFEST_VERSION}"
        )
    if manifest.prompt_format not in SUPPORTED_PROMPT_FORMATS:
        raise PolicyLoadError(
            f"{where}: prompt_format {manifest.prompt_format!r} is unknown; supported: "
            f"{', '.join(SUPPORTED_PROMPT_FORMATS)}"
        )
    if not manifest.tool_schema:
        raise PolicyLoadError(f"{where}: tool_schema is empty; it must include {protocol.SEEK_TOOL_NAME}")
    for tool in manifest.tool_schema:
        sig = _schema_signature(tool)
        ours = protocol.TOOLS.get(sig[0])
        if ours is None:
            raise PolicyLoadError(
                f"{where}: tool {sig[0]!r} is unknown; known tools: {', '.join(protocol.TOOLS)}"
            )
        if sig != _schema_signature(ours):
            raise PolicyLoadError(
                f"{where}: tool {sig[0]!r} has properties {list(sig[1])} (required {list(sig[2])}), "
                f"but this videoseek's has {list(_schema_signature(ours)[1])} "
                f"(required {list(_schema_signature(ours)[2])}); the policy was trained on another schema"
            )
    if manifest.backend == "openai" and not manifest.base_url:
        raise PolicyLoadError(f"{where}: backend 'openai' needs base_url (e.g. http://localhost:8000/v1)")
    if manifest.soft_refinement and manifest.backend != "transformers":
        raise PolicyLoadError(
            f"{where}: soft_refinement needs backend 'transformers' (it reads the policy's hidden "
            f"states); backend {manifest.backend!r} cannot provide it"
        )
    if manifest.tag_vocabulary is not None:
        if manifest.observation != "text":
            raise PolicyLoadError(
                f"{where}: tag_vocabulary is read only with observation 'text' (got {manifest.observation!r}); "
                "drop it or set observation to 'text'"
            )
        if not manifest.tag_vocabulary or len(set(manifest.tag_vocabulary)) != len(manifest.tag_vocabulary):
            raise PolicyLoadError(f"{where}: tag_vocabulary must hold distinct tags, at least one")
    return manifest


def read_manifest(directory: str | Path) -> PolicyManifest:
    """Read and validate ``videoseek_policy.json`` from a policy directory.

    Raises:
        PolicyLoadError: If the directory or manifest is missing, unreadable or invalid.
    """
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise PolicyLoadError(
            f"policy directory {str(d)!r} does not exist (give a directory, a Hugging Face hub id "
            "org/name, or an http(s) URL)"
        )
    path = d / MANIFEST_NAME
    if not path.is_file():
        raise PolicyLoadError(
            f"{str(d)!r} has no {MANIFEST_NAME}; a videoseek policy is a save_pretrained directory plus "
            "that manifest (agent_tools.policies.write_manifest writes one); to run an untuned base VLM "
            "from it, pass allow_base=True"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PolicyLoadError(f"{str(path)!r} is not valid JSON: {exc}") from None
    try:
        manifest = PolicyManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise PolicyLoadError(f"{str(path)!r}: field {loc!r}: {first['msg']}") from None
    return validate_manifest(manifest, str(path))


def write_manifest(directory: str | Path, manifest: PolicyManifest) -> Path:
    """Validate and write ``videoseek_policy.json`` into ``directory``, with a ``README.md`` model card.

    The card (:func:`agent_tools.policies.hub.write_model_card`) is refreshed on every write
    unless the folder holds a ``README.md`` written by someone else.

    Returns:
        The manifest path.
    """
    validate_manifest(manifest)
    path = Path(directory) / MANIFEST_NAME
    path.write_text(json.dumps(manifest.model_dump(mode="json", exclude_none=True), indent=2) + "\n")
    from agent_tools.policies.hub import write_model_card  # README.md model card (a user's own is kept)

    write_model_card(directory, manifest)
    return path


def load_policy(
    source: str | Path,
    *,
    model: Optional[str] = None,
    api_key: Optional[str] = None,
    device: str = "auto",
    revision: Optional[str] = None,
    allow_base: Optional[bool] = None,
    **kwargs: Any,
):
    """Load a policy from a checkpoint directory, a Hugging Face hub id or an OpenAI-compatible URL.

    Args:
        source: A directory holding ``videoseek_policy.json`` (plus the ``save_pretrained`` files
            for the transformers backend), a hub id ``"org/name"`` (fetched with
            ``huggingface_hub.snapshot_download``: cache, ``HF_HUB_OFFLINE`` and tokens apply), or
            an ``http(s)://…/v1`` base URL.
        model: Served model name for URLs (default: the server's first model).
        api_key: Bearer token for URLs (default: ``$OPENAI_API_KEY`` if set).
        device: Torch device for the transformers backend.
        revision: Hub revision (branch, tag, commit) for hub ids.
        allow_base: Load a transformers folder without ``videoseek_policy.json`` as an untuned
            base VLM with :func:`agent_tools.policies.hub.base_model_manifest` (logged as a
            warning). Default: True for hub ids, False for local folders.
        **kwargs: Passed to the backend's constructor (e.g. ``max_new_tokens``; ``text_only=True``
            for a text-only model behind a URL). A checkpoint whose manifest says
            ``observation: "text"`` is loaded ``text_only``: frames reach it as text lines.

    Returns:
        A :class:`~agent_tools.policies.base.Policy` with ``.manifest`` set; a transformers
        checkpoint with ``soft_refinement: true`` also gets ``refine_query_vector``
        (:mod:`agent_tools.policies.soft_refine`).

    Raises:
        PolicyLoadError: If the source is not a valid policy.
    """
    text = str(source)
    if text.startswith(("http://", "https://")):
        from agent_tools.policies.openai_policy import OpenAIPolicy

        manifest = PolicyManifest(
            backend="openai",
            base_url=text,
            model=model,
            name=model or text,
            observation="text" if kwargs.get("text_only") else "images",
        )
        return OpenAIPolicy(text, model=model, api_key=api_key, manifest=manifest, **kwargs)
    from agent_tools.policies import hub

    if hub.is_hub_id(text):
        try:
            d = hub.snapshot(text, revision=revision)
        except PolicyLoadError as exc:
            raise PolicyLoadError(f"{exc}; there is no local folder {text!r} either") from None
        allow_base = True if allow_base is None else allow_base
    else:
        d = Path(source).expanduser()
    if allow_base and not (d / MANIFEST_NAME).is_file() and (d / "config.json").is_file():
        name = text if hub.is_hub_id(text) else str(d)
        manifest = hub.base_model_manifest(name)
        logging.getLogger("agent_tools.policies").warning(
            "%s has no %s: loading it as an untuned base model with videoseek's default manifest "
            "(it was not trained for video search; expect weaker searches than a trained policy)",
            name,
            MANIFEST_NAME,
        )
    else:
        manifest = read_manifest(d)
    if manifest.observation == "text":  # trained on text observations: it must read them again
        kwargs.setdefault("text_only", True)
    if manifest.backend == "openai":
        from agent_tools.policies.openai_policy import OpenAIPolicy

        return OpenAIPolicy(
            manifest.base_url, model=model or manifest.model, api_key=api_key, manifest=manifest, **kwargs
        )
    if not (d / "config.json").is_file():
        raise PolicyLoadError(
            f"{str(d)!r}: backend 'transformers' needs the save_pretrained files (config.json, weights, "
            "processor); none found"
        )
    from agent_tools.policies.transformers_policy import TransformersPolicy

    policy = TransformersPolicy.from_pretrained(d, manifest=manifest, device=device, **kwargs)
    if manifest.soft_refinement:  # a training.sqr checkpoint: attach its projector
        from agent_tools.policies.soft_refine import attach_soft_refiner

        attach_soft_refiner(policy, d)
    return policy
