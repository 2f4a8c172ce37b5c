#!/usr/bin/env bash
# nerfacto vs t23d comparison run (see run_nerfacto.py). Uses the separate nerfstudio venv only.
#   bash benchmarks/nerfstudio_venv/run_nerfacto.sh [extra args for run_nerfacto.py]
set -euo pipefail
VENV="${NS_VENV:-/tmp/ns-venv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$VENV/bin/python" -W ignore::UserWarning "$HERE/run_nerfacto.py" \
    --make-ns-folder --source /tmp/t23d-bench/object256 --data /tmp/t23d-bench/object256_ns \
    --out /tmp/t23d-bench/ns_runs --minutes 10 --milestones 1 2 5 10 --threads 2 "$@"
