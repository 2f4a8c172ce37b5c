#!/usr/bin/env bash
# Create a SEPARATE virtual environment with nerfstudio 1.1.5 for the hash-grid comparison benchmark.
#
# Never install nerfstudio into the product's environment: it forces numpy 1.26 / protobuf 3.20 and
# a torchvision that breaks beside CPU torch 2.13.0 (see /work/shared/ENVIRONMENT_NOTES.md).
# torch is pinned to 2.14.1 + torchvision 0.29.1, a matching pair pip takes from local disk, and it
# stays pinned through a constraints file while nerfstudio resolves its dependencies (~3.5 GB).
#
# Usage: bash benchmarks/nerfstudio_venv/setup.sh [VENV_DIR]   (default /tmp/ns-venv)
set -euo pipefail

VENV_DIR="${1:-/tmp/ns-venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV_DIR"
fi
PIP=("$VENV_DIR/bin/python" -m pip)
"${PIP[@]}" install --upgrade pip
"${PIP[@]}" install torch==2.14.1 torchvision==0.29.1

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
printf 'torch==2.14.1\ntorchvision==0.29.1\n' >"$CONSTRAINTS"
"${PIP[@]}" install -c "$CONSTRAINTS" nerfstudio==1.1.5

"$VENV_DIR/bin/python" - <<'PY'
import torch
from nerfstudio.field_components.encodings import HashEncoding  # noqa: F401

print(f"nerfstudio venv ready: torch {torch.__version__}")
PY
