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
#   LATE_S=300 benchmarks/cuda_check.sh ...   # skip the reconstruct / generate steps that would start after 300 s
#   BENCH_CUDA_ARGS="--repeats 5" benchmarks/cuda_check.sh ...   # arguments of benchmarks/bench_cuda.py
#
# TCNN_SRC is a tiny-cuda-nn checkout with its submodules (cutlass, fmt); NVDIFFRAST_SRC an nvdiffrast
# checkout. Each step has its own log in OUT_DIR; a failing step does not stop the later ones.
# The compiler: an extension that links libstdc++ statically (no libstdc++.so.6 among its NEEDED
# libraries) carries its own std::locale, and tcnn's first workspace allocation formats a double into an
# ostringstream and segfaults there (seen with /opt/gcc's g++ on an H200 machine, session 15). So before
# building, each candidate g++ ($CXX if set, then every g++ on PATH and in /usr/bin) compiles a probe
# shared object that formats a double; the first whose probe links the shared libstdc++ and runs when
# loaded beside torch builds both extensions (CC the matching gcc, which nvcc takes as -ccbin). When
# none does, the first candidate links against the libstdc++.so.6 that torch's process loads (a shim
# folder on -L). The built extensions are checked the same way afterwards.
set -u
OUT=${1:?usage: cuda_check.sh OUT_DIR [SCENE_DIR] [TCNN_SRC NVDIFFRAST_SRC]}
SCENE=${2:-}
TCNN_SRC=${3:-}
NVDR_SRC=${4:-}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T0=$(date +%s)
step() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$OUT/timeline.txt"; }
ARCH=$($PY -c "import torch; a, b = torch.cuda.get_device_capability(); print(f'{a}{b}')") || exit 1

# probe_cxx CXX [LDFLAGS...]: 0 when a shared object built by CXX links libstdc++.so and formats a
# double when loaded beside torch (in a child, so a crash is a failed probe, not a failed script)
probe_cxx() {
  local cxx=$1 d
  shift
  d=$(mktemp -d)
  printf '#include <sstream>\nextern "C" int t23d_probe() { std::ostringstream s; s << 1.5 << " MB"; return (int)s.str().size(); }\n' >"$d/p.cpp"
  "$cxx" -shared -fPIC -O1 "$d/p.cpp" -o "$d/p.so" "$@" >>"$OUT/compiler-probe.txt" 2>&1 || return 1
  readelf -d "$d/p.so" | grep -q "libstdc++" || { echo "$cxx $*: links libstdc++ statically" >>"$OUT/compiler-probe.txt"; return 2; }
  $PY -c "import ctypes, sys, torch; sys.exit(0 if ctypes.CDLL('$d/p.so').t23d_probe() == 6 else 1)" \
    >>"$OUT/compiler-probe.txt" 2>&1 || { echo "$cxx $*: probe failed when loaded" >>"$OUT/compiler-probe.txt"; return 3; }
}

if [ -n "$TCNN_SRC" ] && [ -n "$NVDR_SRC" ]; then
  CANDIDATES=$( (echo "${CXX:-}"; which -a g++ 2>/dev/null; ls /usr/bin/g++ /usr/bin/g++-[0-9]* 2>/dev/null) |
    grep . | while read -r c; do readlink -f "$c"; done | awk '!seen[$0]++')
  for c in $CANDIDATES; do echo "== $c: $("$c" --version | head -1)" >>"$OUT/compiler-probe.txt"; done
  CHOSEN=""
  for c in $CANDIDATES; do
    if probe_cxx "$c"; then CHOSEN=$c; break; fi
  done
  if [ -z "$CHOSEN" ]; then
    LIBSTDCXX=$($PY -c "import torch; print(next(l.split()[-1] for l in open('/proc/self/maps') if 'libstdc++' in l))")
    SHIM=$(mktemp -d) && ln -s "$LIBSTDCXX" "$SHIM/libstdc++.so"
    export LDFLAGS="-L$SHIM -Wl,-rpath,$(dirname "$LIBSTDCXX")"
    for c in $CANDIDATES; do
      # shellcheck disable=SC2086
      if probe_cxx "$c" $LDFLAGS; then CHOSEN=$c; break; fi
    done
    [ -n "$CHOSEN" ] && step "no g++ links the shared libstdc++ by itself: linking against torch's ($LIBSTDCXX)"
  fi
  CHOSEN=${CHOSEN:-$(echo "$CANDIDATES" | head -1)}
  export CXX=$CHOSEN CC=${CHOSEN%g++*}gcc${CHOSEN##*g++}
  [ -x "$CC" ] || CC=gcc
  export LDSHARED="$CXX -shared"
  step "building nvdiffrast and tiny-cuda-nn (sm_$ARCH, CXX=$CXX, CC=$CC, LDFLAGS=${LDFLAGS:-})"
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
step "tcnn_available: $(cd "$ROOT" && $PY -c "from t23d.field.hashgrid import tcnn_available; print(tcnn_available())" 2>&1 | tail -1)"

step "GPU tests"
(cd "$ROOT" && $PY -m pytest -p no:cacheprovider -q -rs -m gpu tests/field/test_hashgrid.py tests/render/test_diffrast.py) >"$OUT/pytest-gpu.txt" 2>&1
step "bench_cuda"
# shellcheck disable=SC2086
(cd "$ROOT" && $PY benchmarks/bench_cuda.py ${BENCH_CUDA_ARGS:-}) >"$OUT/bench_cuda.txt" 2>&1
# the last two steps are skipped once LATE_S seconds have passed (a device lease is short)
late() { [ $(($(date +%s) - T0)) -gt "${LATE_S:-100000}" ] && step "skipped: $1 (past LATE_S=$LATE_S s)"; }
if [ -n "$SCENE" ] && ! late "reconstruct"; then
  step "reconstruct $SCENE on CUDA"
  (cd "$ROOT" && $PY -m t23d.cli.main reconstruct "$SCENE" --device cuda --out "$OUT/runs") >"$OUT/reconstruct.txt" 2>&1
fi
late "generate --refine smoke" && { step "done"; exit 0; }
step "generate --refine smoke on CUDA (tiny random Stable Diffusion, fp16)"
(cd "$ROOT" && $PY -c "import sys; sys.path.insert(0, 'tests')
from pathlib import Path
from fixtures.tiny_priors import build_tiny_sd
build_tiny_sd(Path(sys.argv[1]))" "$OUT/tiny-sd" &&
  $PY -m t23d.cli.main generate "a red ball" --preset fast --config configs/cpu-smoke.yaml --prior "$OUT/tiny-sd" \
    --device cuda --refine --refine-config configs/refine-cpu-smoke.yaml --out "$OUT/runs") >"$OUT/generate.txt" 2>&1
step "done"
