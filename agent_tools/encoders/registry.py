"""The encoder registry: named image-text encoders described as data.

Each JSON file in ``agent_tools/encoders/configs/`` (and in any folder listed in
``VIDEOSEEK_ENCODER_CONFIGS``, separated by the OS path separator) describes one encoder:

- ``model`` + ``pretrained``: an open_clip model name and pretrained tag
  (``"ViT-B-16-SigLIP"`` + ``"webli"``), or ``pretrained`` set to a local checkpoint file;
- or ``model_cfg``: an inline open_clip model config built with a fixed random seed
  (only for encoders with ``"trained": false``, i.e. tests).

Usage::

    from agent_tools.encoders.registry import list_encoders, get_spec
    [s.name for s in list_encoders()]        # ['clip-b32-openai', 'siglip-b16', ...]
    get_spec("siglip-b16").model             # 'ViT-B-16-SigLIP'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, Field, model_validator

from ..errors import EncoderUnavailableError

__all__ = ["EncoderSpec", "list_encoders", "get_spec", "register_encoder", "weights_status", "CONFIG_DIR"]

CONFIG_DIR = Path(__file__).parent / "configs"
_EXTRA: dict[str, "EncoderSpec"] = {}


class EncoderSpec(BaseModel):
    """One registry entry."""

    name: str
    description: str = ""
    model: Optional[str] = Field(None, description="open_clip model name.")
    pretrained: Optional[str] = Field(None, description="open_clip pretrained tag or a local checkpoint path.")
    model_cfg: Optional[dict[str, Any]] = Field(None, description="Inline open_clip config (untrained models).")
    tokenizer: Optional[str] = Field(
        None, description="'clip-bpe' (bundled with open_clip) or a local HF tokenizer folder; default: the model's."
    )
    hf_hub: Optional[str] = Field(
        None,
        description="Hugging Face repo holding the weights (as open_clip's pretrained table says); lets "
        "weights_status answer without importing open_clip. Default: looked up in open_clip.",
    )
    seed: int = 0
    trained: bool = True
    source: Optional[str] = Field(None, description="File the entry was read from.")
    missing_hint: Optional[str] = Field(
        None, description="How to obtain the weights when they are missing (e.g. the command that trains them)."
    )

    @model_validator(mode="after")
    def _check(self):
        if not self.model and not self.model_cfg:
            raise ValueError(f"encoder {self.name!r}: set 'model' (open_clip name) or 'model_cfg'")
        if self.model_cfg is not None and self.trained:
            raise ValueError(f"encoder {self.name!r}: an inline model_cfg has random weights, so 'trained' must be false")
        return self

    @property
    def checkpoint_path(self) -> Optional[Path]:
        """The local checkpoint file, when ``pretrained`` is a path rather than a tag."""
        if self.pretrained and (os.sep in self.pretrained or self.pretrained.endswith((".pt", ".bin", ".safetensors"))):
            return Path(self.pretrained).expanduser()
        return None

    @property
    def local_dir(self) -> Optional[Path]:
        """The folder of a ``"local-dir:<folder>"`` model (open_clip config + weights), else None."""
        if self.model and self.model.startswith("local-dir:"):
            return Path(self.model[len("local-dir:") :]).expanduser()
        return None


def _expand_placeholders(data: dict) -> dict:
    """``{cache_dir}`` in ``model`` / ``pretrained`` / ``missing_hint`` → the settings' cache dir."""
    if any("{cache_dir}" in str(data.get(k) or "") for k in ("model", "pretrained", "missing_hint")):
        from ..config import get_settings

        cache = str(get_settings().cache_dir)
        for k in ("model", "pretrained", "missing_hint"):
            if data.get(k):
                data[k] = str(data[k]).replace("{cache_dir}", cache)
    return data


def _config_dirs() -> list[Path]:
    dirs = [CONFIG_DIR]
    extra = os.environ.get("VIDEOSEEK_ENCODER_CONFIGS", "")
    dirs += [Path(p).expanduser() for p in extra.split(os.pathsep) if p.strip()]
    return dirs


def _load_all() -> dict[str, EncoderSpec]:
    specs: dict[str, EncoderSpec] = {}
    for folder in _config_dirs():
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.json")):
            data = _expand_placeholders(json.loads(f.read_text()))
            data["source"] = str(f)
            spec = EncoderSpec(**data)
            specs[spec.name] = spec
    specs.update(_EXTRA)
    return specs


def list_encoders() -> list[EncoderSpec]:
    """All registered encoders, sorted by name."""
    return sorted(_load_all().values(), key=lambda s: s.name)


def get_spec(name: str) -> EncoderSpec:
    """Look an encoder up by name.

    Raises:
        EncoderUnavailableError: The name is not registered (the message lists valid names).
    """
    specs = _load_all()
    if name not in specs:
        raise EncoderUnavailableError(
            f"unknown encoder {name!r}; registered encoders: {', '.join(sorted(specs))} "
            "(add one with a JSON file in a folder listed in VIDEOSEEK_ENCODER_CONFIGS)"
        )
    return specs[name]


def register_encoder(spec: EncoderSpec) -> None:
    """Add or replace an encoder for this process."""
    _EXTRA[spec.name] = spec


def weights_status(spec: EncoderSpec) -> tuple[bool, str]:
    """Whether the encoder's weights are on this machine, without loading or downloading anything.

    Returns:
        ``(available, detail)``.
    """
    if spec.model_cfg is not None:
        return True, "built from config (untrained)"
    ckpt = spec.checkpoint_path
    if ckpt is not None:
        return (ckpt.is_file(), f"checkpoint {ckpt}" + ("" if ckpt.is_file() else " (missing)"))
    local = spec.local_dir
    if local is not None:
        ok = (local / "open_clip_config.json").is_file() and any(
            (local / n).is_file() for n in ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")
        )
        hint = f"; {spec.missing_hint}" if spec.missing_hint and not ok else ""
        return ok, f"local open_clip folder {local}" + ("" if ok else " (missing)") + hint
    if spec.hf_hub:  # known from the registry entry: no open_clip (torch) import
        cfg = {"hf_hub": spec.hf_hub}
    else:
        try:
            import agent_tools._tvshim  # noqa: F401
            import open_clip

            cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained) or {}
        except Exception as exc:  # pragma: no cover
            return False, f"open_clip cannot resolve it ({exc})"
    hub = (cfg.get("hf_hub") or "").strip("/")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache

            for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
                hit = try_to_load_from_cache(hub, fname)
                if isinstance(hit, str) and os.path.exists(hit):
                    return True, f"in the Hugging Face cache ({hub})"
        except Exception:  # pragma: no cover
            pass
    url = cfg.get("url") or ""
    if url:
        local = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip" / os.path.basename(url)
        if local.is_file():
            return True, f"in the CLIP cache ({local})"
    return False, f"not downloaded (hub: {hub or url or 'n/a'})"
