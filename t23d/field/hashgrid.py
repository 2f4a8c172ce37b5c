"""Multi-resolution hash-grid encoding (Müller et al. 2022, "Instant Neural Graphics Primitives").

Three interchangeable implementations share one parameter layout, so a checkpoint trained with one
loads into another:

- ``"torch"``: :func:`hash_grid_encode_reference`, plain PyTorch. **This is the specification**: every
  other implementation is tested against it, outputs and gradients.
- ``"cpp"``: a compiled CPU kernel (``t23d/field/csrc/hashgrid_cpu.cpp``, built on first use with
  ``torch.utils.cpp_extension`` and cached), multi-threaded with OpenMP and deterministic.
- ``"tcnn"``: tiny-cuda-nn's ``HashGrid`` on CUDA devices (optional install).

``"auto"`` picks tcnn on a CUDA device when tinycudann imports and a tiny forward + backward runs (in a
child process: a broken build can crash), the C++ kernel on CPU when it builds, and otherwise the
reference; it logs its choice once. An explicit choice that is unavailable raises.

The layout and indexing follow tiny-cuda-nn's ``GridEncoding`` exactly, so parameters can be copied
between implementations: level ``l`` has scale ``s_l = base_resolution * per_level_scale**l - 1`` and
resolution ``r_l = ceil(s_l) + 1``; a point ``x`` in ``[0, 1]^3`` maps to ``p = x * s_l + 0.5``; the level
stores ``T_l = min(next_multiple(r_l**3, 8), 2**log2_hashmap_size)`` feature vectors; corner ``c`` is
indexed densely (``c0 + c1 r + c2 r^2``) when ``r_l**3 <= T_l`` and otherwise by the spatial hash
``(c0 * 1) xor (c1 * 2654435761) xor (c2 * 805459861)`` (uint32), both modulo ``T_l``. Features of the
8 corners are blended trilinearly. Output: ``[N, n_levels * n_features_per_level]``, level-major.
"""

from __future__ import annotations

import functools
import logging
import signal
import subprocess
import sys
from typing import Literal

import torch
from torch import Tensor, nn

from t23d.common.errors import T23dError
from t23d.field.hashgrid_layout import HashGridConfig, Implementation, level_layout

logger = logging.getLogger(__name__)

PRIMES = (1, 2654435761, 805459861)
"""Spatial-hash primes of Teschner et al., as used by instant-ngp and tiny-cuda-nn."""


def _grid_index(corner: Tensor, resolution: int, hashmap_size: int) -> Tensor:
    """Index of integer grid corners ``corner`` [..., 3] (int64) within one level's table."""
    if resolution**3 <= hashmap_size:
        index = corner[..., 0] + corner[..., 1] * resolution + corner[..., 2] * resolution * resolution
    else:
        index = (corner[..., 0] * PRIMES[0]) ^ (corner[..., 1] * PRIMES[1]) ^ (corner[..., 2] * PRIMES[2])
        index = index & 0xFFFFFFFF  # uint32 arithmetic, as tiny-cuda-nn
    return index % hashmap_size


_CORNER_OFFSETS = torch.tensor(
    [[(i >> d) & 1 for d in range(3)] for i in range(8)], dtype=torch.int64
)  # [8, 3]


class _GatherRows(torch.autograd.Function):
    """``table[index]`` whose backward adds the gradient rows with ``index_add`` instead of ``index_put_``.

    The backward of advanced indexing is ``index_put_(..., accumulate=True)``, which CUDA implements by
    sorting every index; ``index_add`` accumulates with atomics. On an H200 the reference's forward +
    backward at 1M points took 39 ms with this gather and 67 ms with plain indexing (benchmarks/
    RESULTS.md, "CUDA paths", session 19; the 86x of session 15 was mostly ``prod``'s backward). Used on CUDA
    only: on one CPU thread ``index_add`` made the reference's forward + backward 20-40% slower than
    plain indexing (same sums). The backward is itself differentiable (``index_add`` is differentiable
    w.r.t. its source), so second-order gradients still flow.
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor) -> Tensor:  # type: ignore[override]
        """``table`` [T, F], ``index`` [...] int64 -> ``table[index]`` [..., F]."""
        ctx.save_for_backward(index)
        ctx.num_rows = table.shape[0]
        return table[index]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        """Scatter-add ``grad`` [..., F] into a zero ``[T, F]`` gradient of the table."""
        (index,) = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1])  # [N, F]
        grad_table = rows.new_zeros(ctx.num_rows, rows.shape[-1]).index_add(0, index.reshape(-1), rows)
        return grad_table, None


def hash_grid_encode_reference(x: Tensor, table: Tensor, cfg: HashGridConfig) -> Tensor:
    """Reference hash-grid encoding in plain PyTorch (the specification).

    Args:
        x: points in ``[0, 1]^3``, shape ``[N, 3]``, float32. Values outside are clamped.
        table: parameters ``[offsets[-1], F]`` as laid out by :func:`level_layout`.
        cfg: the grid's configuration.

    Returns:
        ``[N, L * F]`` features, level-major. Differentiable w.r.t. ``table`` and ``x``.
    """
    scales, resolutions, offsets = level_layout(cfg)
    x = x.clamp(0.0, 1.0)
    corner_offsets = _CORNER_OFFSETS.to(x.device)  # [8, 3]
    outputs = []
    for level in range(cfg.n_levels):
        pos = x * scales[level] + 0.5  # [N, 3]
        pos_floor = torch.floor(pos)
        frac = pos - pos_floor  # [N, 3], differentiable w.r.t. x
        pos_grid = pos_floor.detach().long()  # [N, 3]
        corners = pos_grid[:, None, :] + corner_offsets[None]  # [N, 8, 3]
        # trilinear weights: prod over dims of (frac if bit else 1 - frac)
        bits = corner_offsets[None].to(x.dtype)  # [1, 8, 3]
        factors = bits * frac[:, None, :] + (1 - bits) * (1 - frac[:, None, :])  # [N, 8, 3]
        # an explicit product, not .prod(-1): prod's backward takes a slow cumprod path whenever a factor
        # is 0 (a point on a grid plane); on an H200 that path made the fwd+bwd 39x slower (benchmarks/
        # RESULTS.md, "CUDA paths", session 19)
        weights = factors[..., 0] * factors[..., 1] * factors[..., 2]  # [N, 8]
        hashmap_size = offsets[level + 1] - offsets[level]
        index = _grid_index(corners, resolutions[level], hashmap_size) + offsets[level]  # [N, 8]
        feats = _GatherRows.apply(table, index) if table.is_cuda else table[index]  # [N, 8, F]
        outputs.append((weights[..., None] * feats).sum(1))  # [N, F]
    return torch.cat(outputs, dim=-1)  # [N, L * F]


TCNN_PROBE = """
import torch, tinycudann
grid = {"otype": "HashGrid", "n_levels": 2, "n_features_per_level": 2, "log2_hashmap_size": 10,
        "base_resolution": 4, "per_level_scale": 2.0}
encoding = tinycudann.Encoding(3, grid, dtype=torch.float32)
x = torch.rand(256, 3, device="cuda", requires_grad=True)
encoding(x).sum().backward()
torch.cuda.synchronize()
"""
"""A tiny tcnn forward + backward, run in a child process by :func:`tcnn_runs`."""

TCNN_PROBE_TIMEOUT_S = 300.0
"""A first tcnn call may JIT-compile kernels (tcnn's runtime compilation): allow minutes."""


@functools.cache
def tcnn_runs() -> tuple[bool, str]:
    """Whether a tiny tcnn forward + backward runs, tried once per process in a child process.

    A tiny-cuda-nn build can import and then crash the process at its first call: on an H200 machine, a
    build whose compiler linked libstdc++ statically segfaulted in tcnn's own allocator log
    (benchmarks/RESULTS.md, "CUDA paths"). Trying it in a child turns that into a reason here instead of
    a dead run.
    """
    try:
        res = subprocess.run(
            [sys.executable, "-c", TCNN_PROBE], capture_output=True, text=True, timeout=TCNN_PROBE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return False, f"a tiny tinycudann forward + backward did not finish in {TCNN_PROBE_TIMEOUT_S:.0f} s"
    if res.returncode == 0:
        return True, ""
    if res.returncode < 0:
        try:
            name = signal.Signals(-res.returncode).name
        except ValueError:
            name = f"signal {-res.returncode}"
        return False, (
            f"tinycudann imports but a tiny forward + backward crashed ({name}); a build whose compiler "
            "linked libstdc++ statically crashes this way: rebuild tiny-cuda-nn with a g++ that links the "
            "shared libstdc++ (see benchmarks/cuda_check.sh)"
        )
    lines = res.stderr.strip().splitlines() or [f"exit status {res.returncode}"]
    return False, f"tinycudann imports but a tiny forward + backward failed ({lines[-1]})"


def tcnn_available() -> tuple[bool, str]:
    """Whether tiny-cuda-nn can be used, and why not (it must import and run: :func:`tcnn_runs`)."""
    if not torch.cuda.is_available():
        return False, "no CUDA device is available"
    try:
        import tinycudann  # noqa: F401
    except Exception as e:  # ImportError, or a CUDA/ABI mismatch raising something else
        return False, f"tinycudann does not import ({type(e).__name__}: {e})"
    return tcnn_runs()


_auto_logged: set[str] = set()


def resolve_implementation(
    requested: Implementation, device: torch.device
) -> Literal["tcnn", "cpp", "torch"]:
    """Turn ``auto`` into a concrete implementation for ``device``; raise if an explicit one is unavailable."""
    from t23d.field import hashgrid_cpu

    if requested == "tcnn":
        ok, why = tcnn_available()
        if not ok or device.type != "cuda":
            why = why or f"the field is on {device}, tcnn needs a CUDA device"
            raise T23dError(
                f"hash-grid implementation 'tcnn' is unavailable: {why}. Install tiny-cuda-nn "
                "(pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch) "
                "on a CUDA machine, or set implementation to 'auto' or 'torch'."
            )
        return "tcnn"
    if requested == "cpp":
        if device.type != "cpu":
            raise T23dError(f"hash-grid implementation 'cpp' runs on CPU only, but the field is on {device}")
        ok, why = hashgrid_cpu.available()
        if not ok:
            raise T23dError(
                f"hash-grid implementation 'cpp' is unavailable: {why}. Set implementation 'torch'."
            )
        return "cpp"
    if requested == "torch":
        return "torch"
    if requested != "auto":
        raise T23dError(f"unknown hash-grid implementation {requested!r}; accepted: auto, tcnn, cpp, torch")
    choice: Literal["tcnn", "cpp", "torch"]
    if device.type == "cuda":
        ok, why = tcnn_available()
        choice = "tcnn" if ok else "torch"
        reason = "tinycudann found" if ok else why
    elif device.type == "cpu":
        ok, why = hashgrid_cpu.available()
        choice = "cpp" if ok else "torch"
        reason = "compiled CPU kernel" if ok else f"C++ kernel unavailable: {why}"
    else:
        choice, reason = "torch", f"device {device.type}"
    key = f"{device.type}:{choice}"
    if key not in _auto_logged:
        _auto_logged.add(key)
        logger.info("hash grid: implementation 'auto' -> '%s' (%s)", choice, reason)
    return choice


class HashGridEncoding(nn.Module):
    """Hash-grid encoding module with a single parameter tensor ``table`` ``[offsets[-1], F]``.

    The table is stored in float32 in the layout of :func:`level_layout` whatever the implementation,
    so checkpoints are interchangeable; ``implementation`` is recorded in checkpoints for the record.
    """

    def __init__(
        self,
        cfg: HashGridConfig,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        device = torch.device(device)
        self.implementation = resolve_implementation(cfg.implementation, device)
        _, _, offsets = level_layout(cfg)
        table = torch.empty(offsets[-1], cfg.n_features_per_level)
        table.uniform_(-cfg.init_scale, cfg.init_scale, generator=generator)
        self.table = nn.Parameter(table.to(device))
        self._tcnn = None
        if self.implementation == "tcnn":
            self._tcnn = _make_tcnn_encoding(cfg)

    @property
    def output_dim(self) -> int:
        """Width of the encoding."""
        return self.cfg.output_dim

    def forward(self, x: Tensor) -> Tensor:
        """Encode points ``x`` [N, 3] in ``[0, 1]^3`` -> ``[N, L * F]`` float32."""
        if self.implementation == "cpp":
            from t23d.field import hashgrid_cpu

            return hashgrid_cpu.hash_grid_encode_cpu(x, self.table, self.cfg)
        if self.implementation == "tcnn":
            return _tcnn_forward(self._tcnn, x, self.table)
        return hash_grid_encode_reference(x, self.table, self.cfg)


def _make_tcnn_encoding(cfg: HashGridConfig):  # pragma: no cover - needs CUDA
    import tinycudann as tcnn

    return tcnn.Encoding(
        3,
        {
            "otype": "HashGrid",
            "n_levels": cfg.n_levels,
            "n_features_per_level": cfg.n_features_per_level,
            "log2_hashmap_size": cfg.log2_hashmap_size,
            "base_resolution": cfg.base_resolution,
            "per_level_scale": cfg.per_level_scale,
            "interpolation": "Linear",
        },
        dtype=torch.float32,
    )


def _tcnn_forward(enc, x: Tensor, table: Tensor) -> Tensor:  # pragma: no cover - needs CUDA
    # tcnn keeps its own parameter buffer; we keep ours as the source of truth and hand it over
    # through the functional interface so gradients land on `table`.
    # tcnn's native forward only accepts batches that are a multiple of its granularity (128): pad like
    # tinycudann.modules.Module.forward does, and drop the padded rows.
    from tinycudann.modules import _C, _module_function

    batch_size = x.shape[0]
    granularity = int(_C.batch_size_granularity())
    padded_size = (batch_size + granularity - 1) // granularity * granularity
    x = x.clamp(0, 1)
    if padded_size != batch_size:
        x = torch.nn.functional.pad(x, [0, 0, 0, padded_size - batch_size])
    out = _module_function.apply(
        enc.native_tcnn_module, x.float().contiguous(), table.reshape(-1).contiguous(), enc.loss_scale
    )
    return out[:batch_size].float()
