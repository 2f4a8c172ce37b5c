"""Compiled CPU hash-grid kernel: the ``"cpp"`` implementation of :mod:`t23d.field.hashgrid`.

The C++ source (``csrc/hashgrid_cpu.cpp``) is compiled on first use with
:func:`torch.utils.cpp_extension.load` (ninja, ``-O3 -march=native -fopenmp``) and cached in torch's
extension directory (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), so only the
first use on a machine pays the compile (about a minute). The extension name includes a fingerprint of
the CPU, so a cache shared between different machines never loads a binary built for another
instruction set.

The kernel computes exactly the math of :func:`t23d.field.hashgrid.hash_grid_encode_reference`
(same float32 scales, no fused multiply-add), parallelised with OpenMP over
``torch.get_num_threads()`` threads. Its gradients are deterministic: the table gradient is
bit-identical from run to run whatever the number of threads (each thread owns whole levels, so no
atomics), and the gradient with respect to the points is computed only when they require it.

Importing this module never compiles anything and never fails; :func:`available` builds or loads the
extension once and reports why it cannot be used. Setting ``T23D_DISABLE_CPP_HASHGRID=1`` makes it
report the kernel as unavailable (``auto`` then uses the torch reference and says so in its log).

Memory: besides its outputs, the kernel keeps one level-major scratch buffer per calling thread, as
large as the largest encoding computed so far (``N * L * F`` floats: 32 MiB at 2^18 points x 32).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from t23d.common.errors import T23dError
from t23d.field.hashgrid_layout import HashGridConfig, level_layout

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "hashgrid_cpu.cpp"
"""The C++ source of the kernel."""

EXTRA_CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off"]
"""Compiler flags. ``-ffp-contract=off`` keeps ``x * scale + 0.5`` as two roundings, like the reference."""

EXTRA_LDFLAGS = ["-fopenmp"]

_lock = threading.Lock()
_extension: ModuleType | None = None
_status: tuple[bool, str] | None = None


def _cpu_fingerprint() -> str:
    """Short hash of the CPU model and instruction-set flags (the binary is built with ``-march=native``)."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features")):
                    text += line
                if line.strip() == "":  # the first processor is enough
                    break
    except OSError:
        pass
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _extension_name() -> str:
    """Build name: the CPU fingerprint and a hash of the source's path and contents, so two checkouts
    (or versions) never rebuild over each other's binary, while one checkout reuses its build."""
    digest = hashlib.sha1(str(SOURCE.resolve()).encode() + SOURCE.read_bytes()).hexdigest()[:8]
    return f"t23d_hashgrid_cpu_{_cpu_fingerprint()}_{digest}"


STALE_LOCK_SECONDS = 900.0
"""A build lock older than this is left over from a killed build (a build takes ~1-2 min) and is removed;
torch's own lock would otherwise make every later process wait forever."""


def _remove_stale_lock(build_dir: str) -> None:
    lock = Path(build_dir) / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return
    if age > STALE_LOCK_SECONDS:
        logger.warning("removing a stale build lock %s (%.0f s old, left by a killed build)", lock, age)
        lock.unlink(missing_ok=True)


def _summarise_build_error(error: BaseException) -> str:
    """The compiler's error lines (at most 5), or the last lines of the message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [
        line for line in lines if "error" in line.lower() and not line.startswith("Error building extension")
    ]
    picked = errors[:5] if errors else lines[-5:]
    return f"{type(error).__name__}: " + " | ".join(picked)


@contextmanager
def _ninja_first_on_path() -> Iterator[None]:
    """Put the ``ninja`` package's binary (a dependency) first on ``PATH`` while torch builds: torch runs
    whichever ``ninja`` is on ``PATH``, and two ninja versions (pip's 1.13 and Debian's 1.11) each discard
    the other's ``.ninja_log``, so processes alternating between them rebuilt the kernel (60-85 s)
    every time one of them loaded it."""
    try:
        import ninja

        bin_dir = str(ninja.BIN_DIR)
    except (ImportError, AttributeError):  # no pip ninja: whatever is on PATH, as torch would
        yield
        return
    before = os.environ.get("PATH")
    os.environ["PATH"] = bin_dir + os.pathsep + (before or "")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before


def _build() -> ModuleType:
    from torch.utils.cpp_extension import _get_build_directory, load

    name = _extension_name()
    build_dir = _get_build_directory(name, verbose=False)
    _remove_stale_lock(build_dir)
    source_mtime = SOURCE.stat().st_mtime
    up_to_date = any(
        p.suffix in (".so", ".pyd") and p.stat().st_mtime >= source_mtime
        for p in Path(build_dir).glob(f"{name}*")
    )
    if not up_to_date:
        logger.info("compiling the hash-grid CPU kernel (once, ~1 min) into %s", build_dir)
    start = time.perf_counter()
    with _ninja_first_on_path():
        module = load(
            name=name,
            sources=[str(SOURCE)],
            extra_cflags=EXTRA_CFLAGS,
            extra_ldflags=EXTRA_LDFLAGS,
            build_directory=build_dir,
            verbose=False,
        )
    elapsed = time.perf_counter() - start
    if elapsed > 2.0:
        logger.info("hash-grid CPU kernel ready after %.1f s", elapsed)
    return module


def available() -> tuple[bool, str]:
    """Whether the compiled CPU kernel can be used, and why not.

    The first call compiles (or loads the cached build of) the extension; the result is cached for
    the process, and concurrent first calls wait for a single build.
    """
    global _extension, _status
    if _status is not None:
        return _status
    with _lock:
        if _status is None:
            if os.environ.get("T23D_DISABLE_CPP_HASHGRID", "") not in ("", "0"):
                _status = (False, "disabled by the environment variable T23D_DISABLE_CPP_HASHGRID")
            else:
                try:
                    _extension = _build()
                    _status = (True, "")
                except Exception as e:  # compiler missing or failing, ninja missing, ...
                    _status = (False, f"building the C++ extension failed ({_summarise_build_error(e)})")
                    logger.warning("hash-grid CPU kernel unavailable: %s", _status[1])
    return _status


def _load_extension() -> ModuleType:
    ok, why = available()
    if not ok:
        raise T23dError(f"hash-grid implementation 'cpp' is unavailable: {why}. Set implementation 'torch'.")
    assert _extension is not None
    return _extension


class _HashGridCpuFunction(torch.autograd.Function):
    """Autograd wrapper around the compiled forward and backward (first-order gradients only)."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, table: Tensor, layout: tuple[list[float], list[int], list[int]]
    ) -> Tensor:
        ext = _load_extension()
        out = ext.forward(x, table, *layout)  # [N, L * F]
        ctx.save_for_backward(x, table)
        ctx.layout = layout
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        if torch.is_grad_enabled():
            # create_graph=True: the returned gradients would silently be constants (their own gradient,
            # e.g. of an eikonal loss on analytic normals, would be lost), so refuse.
            raise T23dError(
                "the 'cpp' hash-grid kernel is differentiable once only: double backward (create_graph=True, "
                "e.g. a loss on analytic normals) needs implementation 'torch' (or 'tcnn' on CUDA)"
            )
        x, table = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ext = _load_extension()
        grad_table, grad_x = ext.backward(
            grad_out.contiguous().float(),
            x,
            table,
            *ctx.layout,
            need_table_grad=need_table,
            need_x_grad=need_x,
        )  # [T_total, F] | None, [N, 3] | None
        return grad_x, grad_table, None


_layout_cache: dict[tuple[Any, ...], tuple[list[float], list[int], list[int]]] = {}


def _cached_layout(cfg: HashGridConfig) -> tuple[list[float], list[int], list[int]]:
    """``level_layout(cfg)``, memoised on the fields that determine it (it builds small tensors per level)."""

    key = (
        cfg.n_levels,
        cfg.n_features_per_level,
        cfg.log2_hashmap_size,
        cfg.base_resolution,
        cfg.max_resolution,
    )
    layout = _layout_cache.get(key)
    if layout is None:
        layout = _layout_cache[key] = level_layout(cfg)
    return layout


def hash_grid_encode_cpu(x: Tensor, table: Tensor, cfg: HashGridConfig) -> Tensor:
    """Hash-grid encoding with the compiled CPU kernel; same result as ``hash_grid_encode_reference``.

    Args:
        x: points ``[N, 3]``, float32, on CPU; values outside ``[0, 1]`` are clamped.
        table: parameters ``[offsets[-1], F]``, float32, on CPU, laid out by ``level_layout(cfg)``.
        cfg: the grid's configuration.

    Returns:
        ``[N, L * F]`` features, level-major. Differentiable w.r.t. ``table`` and ``x`` (first order).

    Raises:
        T23dError: wrong device, dtype or shape, or the kernel cannot be built.
    """
    scales, resolutions, offsets = _cached_layout(cfg)
    num_features = cfg.n_features_per_level
    if x.device.type != "cpu" or table.device.type != "cpu":
        raise T23dError(
            f"hash_grid_encode_cpu needs CPU tensors, got x on {x.device} and table on {table.device}"
        )
    if x.dtype != torch.float32 or table.dtype != torch.float32:
        raise T23dError(f"hash_grid_encode_cpu needs float32 x and table, got {x.dtype} and {table.dtype}")
    if x.dim() != 2 or x.shape[1] != 3:
        raise T23dError(f"hash_grid_encode_cpu: x must have shape [N, 3], got {list(x.shape)}")
    if tuple(table.shape) != (offsets[-1], num_features):
        raise T23dError(
            f"hash_grid_encode_cpu: table must have shape [{offsets[-1]}, {num_features}] for this config, "
            f"got {list(table.shape)}"
        )
    if not 1 <= num_features <= 16:
        raise T23dError(f"hash_grid_encode_cpu supports 1 to 16 features per level, got {num_features}")
    return _HashGridCpuFunction.apply(x.contiguous(), table.contiguous(), (scales, resolutions, offsets))
