#!/usr/bin/env bash
# The CUDA checks of t23d on one GPU machine, in one go (benchmarks/RESULTS.md, "CUDA paths"):
#   1. optionally build tiny-cuda-nn's torch bindings (encodings only) and nvdiffrast from source folders
#      into wheels and install them (neither is on PyPI);
#   2. the GPU tests (tcnn vs the reference hash grid, nvdiffrast vs the torch rasteriser);
#   3. benchmarks/bench_cuda.py (agreement and speed of both optional paths);
#   4. a CUDA `t23d reconstruct` of a scene folder (default preset, export included) and a CUDA
#      `t23d generate --refine` smoke run with a tiny random Stable Diffusion (fp16 on CUDA).
#
#   benchmarks/cuda_check.sh OUT_DIR [SCENE_DIR] [TCNN_SRC NVDIFFRAST_SRC]
#
# TCNN_SRC is a tiny-cuda-nn checkout with its submodules (cutlass, fmt); NVDIFFRAST_SRC an nvdiffrast
# checkout. Each step has its own log in OUT_DIR; a failing step does not stop the later ones.
# The compiler is $CXX (default g++). An extension that links libstdc++ statically (no libstdc++.so.6
# among its NEEDED libraries) carries its own std::locale: tcnn's first workspace allocation formats a
# double into an ostringstream and segfaults there (seen with /opt/gcc's g++ on an H200 machine), so the
# build is checked for that and a warning names the fix (a g++ that links the shared libstdc++).
set -u
OUT=${1:?usage: cuda_check.sh OUT_DIR [SCENE_DIR] [TCNN_SRC NVDIFFRAST_SRC]}
SCENE=${2:-}
TCNN_SRC=${3:-}
NVDR_SRC=${4:-}
PY=${PYTHON:-python3}
export CXX=${CXX:-g++} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T0=$(date +%s)
step() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$OUT/timeline.txt"; }
ARCH=$($PY -c "import torch; a, b = torch.cuda.get_device_capability(); print(f'{a}{b}')") || exit 1

if [ -n "$TCNN_SRC" ] && [ -n "$NVDR_SRC" ]; then
  step "building nvdiffrast and tiny-cuda-nn (sm_$ARCH, CXX=$CXX)"
  (cd "$NVDR_SRC" && TORCH_CUDA_ARCH_LIST="${ARCH:0:1}.${ARCH:1}" MAX_JOBS=6 \
    $PY -m pip wheel --no-build-isolation --no-deps -w "$OUT/wheels" . >"$OUT/build-nvdiffrast.txt" 2>&1) &
  (cd "$TCNN_SRC/bindings/torch" && TCNN_CUDA_ARCHITECTURES=$ARCH \
    $PY setup.py bdist_wheel --no-networks -d "$OUT/wheels" >"$OUT/build-tcnn.txt" 2>&1) &
  wait
  $PY -m pip install -q --no-deps --no-index "$OUT"/wheels/*.whl || step "installing the built wheels failed"
  for so in $($PY -c "import pathlib, torch, tinycudann_bindings, _nvdiffrast_c
print(*pathlib.Path(next(iter(tinycudann_bindings.__path__))).glob('*.so'), _nvdiffrast_c.__file__)"); do
    readelf -d "$so" | grep -q "libstdc++" || step "WARNING: $so links libstdc++ statically (tcnn then segfaults in its allocation log): rebuild with CXX set to a g++ that links the shared libstdc++"
  done
fi

step "GPU tests"
(cd "$ROOT" && $PY -m pytest -p no:cacheprovider -q -rs -m gpu tests/field/test_hashgrid.py tests/render/test_diffrast.py) >"$OUT/pytest-gpu.txt" 2>&1
step "bench_cuda"
(cd "$ROOT" && $PY benchmarks/bench_cuda.py) >"$OUT/bench_cuda.txt" 2>&1
if [ -n "$SCENE" ]; then
  step "reconstruct $SCENE on CUDA"
  (cd "$ROOT" && $PY -m t23d.cli.main reconstruct "$SCENE" --device cuda --out "$OUT/runs") >"$OUT/reconstruct.txt" 2>&1
fi
step "generate --refine smoke on CUDA (tiny random Stable Diffusion, fp16)"
(cd "$ROOT" && $PY -c "import sys; sys.path.insert(0, 'tests')
from pathlib import Path
from fixtures.tiny_priors import build_tiny_sd
build_tiny_sd(Path(sys.argv[1]))" "$OUT/tiny-sd" &&
  $PY -m t23d.cli.main generate "a red ball" --preset fast --config configs/cpu-smoke.yaml --prior "$OUT/tiny-sd" \
    --device cuda --refine --refine-config configs/refine-cpu-smoke.yaml --out "$OUT/runs") >"$OUT/generate.txt" 2>&1
step "done"
