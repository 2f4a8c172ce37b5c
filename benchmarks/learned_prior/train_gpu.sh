#!/usr/bin/env bash
# Both learned toy priors (single-view IF layout, multi-view MVDream layout) from scratch on one CUDA GPU,
# side by side, with the same data size and the same training time (32 px, larger batches than the
# CPU recipe in README.md).
#
#   benchmarks/learned_prior/train_gpu.sh OUT_DIR [MINUTES]
#
# Status: exercised end to end with DEVICE=cpu only (the GPU loan of session 20 was withdrawn before it ran).
#
# Renders the two data sets (make_data.py, CPU threads), trains train.py and train_mv.py at once on the
# GPU for MINUTES of wall time each (default 4), and writes OUT_DIR/priors.tgz (split into 15 MB parts
# priors.tgz.part-* when larger, for transfer limits) with both pipeline folders, plus the logs.
# Unpack with: cat priors.tgz.part-* | tar xz -C /work/bench-data/priors
# Env: PY (python, default python3), DEVICE (cuda), VIEWS (views per object, 2000), THREADS (8),
# VAE_STEPS (1500), WORK (scratch folder, /tmp/t23d-priors).
set -u
OUT=${1:?usage: train_gpu.sh OUT_DIR [MINUTES]}
MIN=${2:-4}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
VIEWS=${VIEWS:-2000}
THREADS=${THREADS:-8}
VAE_STEPS=${VAE_STEPS:-1500}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${WORK:-/tmp/t23d-priors}
export PYTHONPATH=$REPO PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK/data"
t0=$(date +%s)
{ date; uname -m; nproc; cat /proc/loadavg; command -v nvidia-smi >/dev/null && nvidia-smi -L; } >"$OUT/machine.txt" 2>&1

$PY "$HERE/make_data.py" --views-per-object "$VIEWS" --threads "$THREADS" --out "$WORK/data/toy-32.npz" \
  >"$OUT/data-if.log" 2>&1 &
$PY "$HERE/make_data.py" --views-per-object "$VIEWS" --views-per-group 4 --threads "$THREADS" \
  --out "$WORK/data/toy-mv-32.npz" >"$OUT/data-mv.log" 2>&1 &
wait
echo "data: $(($(date +%s) - t0)) s" >>"$OUT/machine.txt"

$PY "$HERE/train.py" --device "$DEVICE" --minutes "$MIN" --batch 128 --save-every 1000 --grid-steps 25 \
  --data "$WORK/data/toy-32.npz" --out "$WORK/toy-if-32" >"$OUT/train-if.log" 2>&1 &
$PY "$HERE/train_mv.py" --device "$DEVICE" --minutes "$MIN" --batch 32 --vae-steps "$VAE_STEPS" --grid-steps 50 \
  --data "$WORK/data/toy-mv-32.npz" --out "$WORK/toy-mv-32" >"$OUT/train-mv.log" 2>&1 &
wait
echo "trained: $(($(date +%s) - t0)) s" >>"$OUT/machine.txt"

(cd "$WORK" && tar czf "$OUT/priors.tgz" --exclude='*-train' --exclude='*-build' toy-if-32 toy-mv-32)
if [ "$(stat -c %s "$OUT/priors.tgz")" -gt 15000000 ]; then
  split -b 15000000 -d "$OUT/priors.tgz" "$OUT/priors.tgz.part-" && rm "$OUT/priors.tgz"
fi
ls -la "$OUT" >>"$OUT/machine.txt"
echo "total: $(($(date +%s) - t0)) s" >>"$OUT/machine.txt"
