"""Packaging and install: the torchvision shim acts only where torchvision's ops fail to load,
and the package metadata (license, typing marker, package data, dependency floors) is real.

The shim cases run a fresh interpreter with ``-S`` (no ``.pth`` files, as after a plain
``pip install videoseek``) and a fake ``torchvision`` package first on ``sys.path`` that mirrors
the real import order (``torchvision/__init__.py``: ``extension`` loads ``_C``, then
``_meta_registrations`` calls ``register_fake("torchvision::nms")``):

- healthy: ``extension`` registers the operator schemas itself, as a matched torch/torchvision
  pair's ``_C`` does. The shim must define nothing (defining ``torchvision::nms`` a second time is
  what aborted ``videoseek encoders`` with exit 134).
- broken: ``extension`` fails to load its ops, as PyPI's CUDA torchvision next to a CPU torch does.
  Without the shim the import fails with ``torchvision::nms does not exist``; with it, it succeeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PURELIB = sysconfig.get_paths()["purelib"]

_FAKE_INIT = """
import torch
from . import extension
from torchvision import _meta_registrations
__version__ = "0.0.0+fake"
"""

# Healthy: register the schemas with a namespace-owning library, as TORCH_LIBRARY(torchvision, m)
# in torchvision's _C does (a second "DEF" library of the namespace is an error there too).
_FAKE_EXTENSION = """
import os
import torch

_LIB = None

def _load():
    global _LIB
    if os.environ.get("FAKE_TORCHVISION_OPS") != "load":
        return False  # what an OSError from torch.ops.load_library("_C.so") leaves behind
    _LIB = torch.library.Library("torchvision", "DEF")
    _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return True

_OK = _load()

def _has_ops():
    return _OK
"""

_FAKE_META = """
import torch

@torch.library.register_fake("torchvision::nms")
def _nms(dets, scores, iou_threshold):
    return dets.new_empty((0,), dtype=torch.long)

@torch.library.register_fake("torchvision::qnms")
def _qnms(dets, scores, iou_threshold):
    return dets.new_empty((0,), dtype=torch.long)
"""

# Runs with -S: only the fake torchvision, the repo and site-packages (without its .pth files).
_PROBE = """
import json, sys
sys.path[:0] = [{fake!r}, {root!r}]
sys.path.append({purelib!r})
if {with_shim!r}:
    import agent_tools  # a plain pip install: the hook comes with the package import
else:
    assert not any("Torchvision" in type(f).__name__ for f in sys.meta_path)
try:
    import torchvision
except Exception as exc:
    print(json.dumps({{"ok": False, "error": str(exc).splitlines()[0]}}))
    raise SystemExit(0)
import torch
from agent_tools import _tvshim
torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
print(json.dumps({{"ok": True, "has_ops": torchvision.extension._has_ops(), "patched": _tvshim.patched(),
                  "file": torchvision.__file__}}))
"""


@pytest.fixture(scope="module")
def fake_torchvision(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake_tv")
    pkg = root / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(_FAKE_INIT)
    (pkg / "extension.py").write_text(_FAKE_EXTENSION)
    (pkg / "_meta_registrations.py").write_text(_FAKE_META)
    return root


def _probe(fake: Path, *, ops_load: bool, with_shim: bool) -> dict:
    code = _PROBE.format(fake=str(fake), root=str(ROOT), purelib=PURELIB, with_shim=with_shim)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FAKE_TORCHVISION_OPS")}
    if ops_load:
        env["FAKE_TORCHVISION_OPS"] = "load"
    proc = subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, f"interpreter died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["ok"]:
        assert result["file"].startswith(str(fake)), "the probe imported the real torchvision"
    return result


@pytest.mark.slow
def test_shim_leaves_a_healthy_torchvision_alone(fake_torchvision):
    res = _probe(fake_torchvision, ops_load=True, with_shim=True)
    assert res["ok"], res
    assert res["has_ops"] is True
    assert res["patched"] == []  # torchvision's own registration is the only one


@pytest.mark.slow
def test_shim_makes_a_broken_torchvision_importable(fake_torchvision):
    bare = _probe(fake_torchvision, ops_load=False, with_shim=False)
    assert bare["ok"] is False and "torchvision::nms" in bare["error"]  # the failure the shim exists for

    res = _probe(fake_torchvision, ops_load=False, with_shim=True)
    assert res["ok"], res
    assert res["has_ops"] is False
    assert res["patched"] == ["torchvision::nms", "torchvision::qnms"]


def test_old_unconditional_shim_would_break_the_healthy_case(fake_torchvision):
    """The fake is faithful: defining the schemas before torchvision's own registration fails."""
    code = f"""
import sys
sys.path[:0] = [{str(fake_torchvision)!r}]
sys.path.append({PURELIB!r})
import torch
lib = torch.library.Library("torchvision", "DEF")
lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
import torchvision
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["FAKE_TORCHVISION_OPS"] = "load"
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert "torchvision" in proc.stderr


def test_real_torchvision_imports_here():
    """Whatever pair this environment has (matched CUDA or CPU torch + PyPI torchvision), it imports."""
    tv = pytest.importorskip("torchvision")
    from agent_tools import _tvshim

    import torch

    torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
    if tv.extension._has_ops():
        assert _tvshim.patched() == []
    else:
        assert "torchvision::nms" in _tvshim.patched()


# --------------------------------------------------------------------------- package metadata


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_is_the_declared_license():
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_packages_are_typed_and_package_data_exists():
    cfg = _pyproject()["tool"]["setuptools"]["package-data"]
    for package, globs in cfg.items():
        pkg_dir = ROOT / package
        assert (pkg_dir / "py.typed").is_file(), f"{package} has no py.typed"
        for pattern in globs:
            assert list(pkg_dir.glob(pattern)), f"package-data {package}: {pattern!r} matches no file"


def test_lowest_constraints_pin_every_declared_floor():
    """constraints-lowest.txt (the CI floor job) pins each direct dependency to its declared floor."""
    import re

    pins = {}
    for line in (ROOT / "constraints-lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0].strip().lower())] = version.strip()
    for req in _pyproject()["project"]["dependencies"]:
        req = req.split(";", 1)[0]
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,\s]*)", req)
        assert m, f"dependency without a floor: {req!r}"
        name = re.sub(r"[-_.]+", "-", m.group(1).lower())
        if name == "torch":
            continue  # the floor job keeps the CPU torch this machine has (never a CUDA build)
        assert pins.get(name) == m.group(3), f"{name}: floor {m.group(3)} but constraints-lowest pins {pins.get(name)}"
