#!/usr/bin/env bash
# Build (or refresh) the project's virtual environment from scratch; idempotent.
#   bash scripts/setup_env.sh [VENV_DIR]
# CPU machines get torch 2.13.0 (the CPU build) pinned by a constraints file so no
# resolver ever swaps in a CUDA torch; machines with an NVIDIA driver get the CUDA build.
set -euo pipefail
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip >/dev/null 2>&1 || true

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "[setup] NVIDIA GPU found: installing CUDA torch"
  $VENV/bin/python -c "import torch" 2>/dev/null || $PIP install -q torch
else
  echo "[setup] no GPU: installing CPU torch 2.13.0"
  $PIP install -q "torch==2.13.0"
fi
torch_version="$($VENV/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')"
constraints="$VENV/videoseek-constraints.txt"
echo "torch==${torch_version}" > "$constraints"

$PIP install -q -c "$constraints" -e ".[dev]"

# torchvision shim (see agent_tools/_tvshim.py): applies to every interpreter of the venv.
site="$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "import agent_tools._tvshim" > "$site/videoseek_tvshim.pth"
$VENV/bin/python -c "import torchvision, open_clip, transformers; print('[setup] ok: torch', __import__('torch').__version__)"
