"""Import shim that lets a CUDA-built torchvision load next to a CPU-only torch.

PyPI carries no CPU build of torchvision, so on CPU machines open_clip, timm and
transformers pull a CUDA wheel whose import fails with
``operator torchvision::nms does not exist``. Defining the two operator schemas
before torchvision loads fixes the import; only torchvision's C++ ops (nms,
roi_align, ...) stay unavailable, and videoseek uses none of them.

The hook is lazy and costs nothing until something imports torchvision. On a
machine with a CUDA torch the schema already exists and the hook does nothing.

Usage: ``import agent_tools._tvshim`` before anything imports torchvision, or the
``.pth`` file that ``scripts/setup_env.sh`` writes into site-packages so that every
interpreter of the environment (subprocesses too) gets it.
"""

from __future__ import annotations

import importlib.abc
import sys

__all__ = ["install"]

_LIBS: list = []


class _TorchvisionSchemaHook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # noqa: D401 - importlib protocol
        if name != "torchvision":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        import torch

        try:
            torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
        except Exception:
            lib = torch.library.Library("torchvision", "DEF")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _LIBS.append(lib)
        return None


def install() -> None:
    """Install the hook once (idempotent; a no-op if torchvision is already imported)."""
    if "torchvision" in sys.modules:
        return
    if any(isinstance(f, _TorchvisionSchemaHook) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionSchemaHook())


install()
