#!/bin/sh
# Install Kilroy into a virtual environment: the one install path of README, the Makefile (so CI proves it) and
# the Dockerfile.
#
#   scripts/install.sh [VENV] [EXTRAS]      VENV defaults to .venv; EXTRAS e.g. dev (tests and ruff)
#
# Environment:
#   PYTHON       the interpreter that creates the venv (default python3)
#   TORCH_INDEX  a PyTorch wheel index, e.g. https://download.pytorch.org/whl/cpu (small, CPU only) or
#                https://download.pytorch.org/whl/cu128 (CUDA); empty: the default index
#   EDITABLE=1   install the source tree in development mode (pip install -e)
#
# torch is pinned and installed first, alone: left to the resolver, it pulls gigabytes of CUDA wheels even on a
# machine without a GPU.
set -eu
VENV=${1:-.venv}
EXTRAS=${2:-}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -n "${TORCH_INDEX:-}" ]; then
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX"
else
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
fi
SPEC=.
if [ -n "$EXTRAS" ]; then
  SPEC=".[$EXTRAS]"
fi
if [ "${EDITABLE:-0}" = 1 ]; then
  "$VENV/bin/python" -m pip install -q -e "$SPEC"
else
  "$VENV/bin/python" -m pip install -q "$SPEC"
fi
"$VENV/bin/kilroy" --version
