"""Let torchvision import where its compiled ops cannot load; do nothing anywhere else.

Where a torchvision wheel does not match the installed torch (PyPI has no CPU build of
torchvision, so a CPU torch next to PyPI's torchvision is the common case), torchvision's
``_C`` extension fails to load, ``torchvision.extension._has_ops()`` is False, and then
``torchvision._meta_registrations`` dies on ``register_fake("torchvision::nms")`` with
``operator torchvision::nms does not exist``. open_clip, timm and transformers import
torchvision, so nothing of videoseek would import.

The fix here acts only in that case. An import hook waits for
``torchvision._meta_registrations``: by the time torchvision imports it, torchvision has
already tried to load its own ``_C`` (``torchvision/__init__.py`` imports ``.extension``
first, on purpose). Only if the operator schemas ``torchvision::nms`` / ``torchvision::qnms``
are still missing then does the hook define them (schemas only, no kernels), so the import
goes through; torchvision's C++ ops (nms, roi_align, ...) stay unavailable, and videoseek uses
none of them. A matched torch/torchvision pair registers the schemas itself and the hook
defines nothing (defining them a second time would abort the interpreter).

Names:

- :func:`install` - put the hook on ``sys.meta_path`` (idempotent; a no-op once torchvision
  is imported). ``import agent_tools`` calls it, so a plain ``pip install videoseek`` gets it;
  ``scripts/setup_env.sh`` also writes a ``.pth`` that imports this module at every
  interpreter start of the Makefile venv, for subprocesses (vllm, transformers) that import
  torchvision without importing videoseek.
- :func:`patched` - the operator names the hook had to define in this process (empty on a
  healthy install).
"""

from __future__ import annotations

import importlib.abc
import sys

__all__ = ["install", "patched"]

_TRIGGER = "torchvision._meta_registrations"
# The schemas torchvision's _meta_registrations needs to exist (as in torchvision's C++ code).
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBS: list = []
_PATCHED: list[str] = []


def patched() -> list[str]:
    """Operator names (``torchvision::nms`` ...) this process had to define; empty if none."""
    return list(_PATCHED)


def _has_schema(torch, qualname: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(qualname, "")
    except Exception:  # RuntimeError: "Could not find schema for torchvision::nms"
        return False
    return True


def _define_missing() -> None:
    import torch

    missing = [name for name in _SCHEMAS if not _has_schema(torch, f"torchvision::{name}")]
    if not missing:
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        lib.define(_SCHEMAS[name])
        _PATCHED.append(f"torchvision::{name}")
    _LIBS.append(lib)  # keep the registrations alive for the life of the process


class _TorchvisionOpsHook(importlib.abc.MetaPathFinder):
    """Fires once, when torchvision imports ``_meta_registrations``, after its own ``_C`` load."""

    def find_spec(self, name, path, target=None):  # noqa: D401 - importlib protocol
        if name != _TRIGGER:
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        _define_missing()
        return None  # let the normal finders import the real module


def install() -> None:
    """Install the hook once (idempotent; a no-op if torchvision is already imported)."""
    if "torchvision" in sys.modules:
        return
    if any(type(f).__name__ == _TorchvisionOpsHook.__name__ for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionOpsHook())


install()
