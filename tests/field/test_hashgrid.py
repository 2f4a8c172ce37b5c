"""Hash-grid encoding: the reference against a naive per-point version, the C++ kernel against the reference
(outputs, table and point gradients, determinism), implementation resolution, and tcnn on CUDA."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from t23d.common.errors import T23dError
from t23d.field import hashgrid, hashgrid_cpu
from t23d.field.hashgrid import (
    HashGridConfig,
    HashGridEncoding,
    hash_grid_encode_reference,
    level_layout,
    resolve_implementation,
)
from t23d.field.hashgrid_cpu import hash_grid_encode_cpu

CONFIGS = {
    # every level dense (r^3 <= T), including wrap-around of the far corners
    "dense_only": HashGridConfig(
        n_levels=3, n_features_per_level=2, log2_hashmap_size=16, base_resolution=4, max_resolution=16
    ),
    # dense coarse levels, hashed fine levels
    "hashed_f2": HashGridConfig(
        n_levels=8, n_features_per_level=2, log2_hashmap_size=12, base_resolution=8, max_resolution=256
    ),
    "hashed_f1": HashGridConfig(
        n_levels=4, n_features_per_level=1, log2_hashmap_size=10, base_resolution=16, max_resolution=128
    ),
    "odd_base_f4": HashGridConfig(
        n_levels=5, n_features_per_level=4, log2_hashmap_size=11, base_resolution=5, max_resolution=300
    ),
    "generic_f3": HashGridConfig(
        n_levels=3, n_features_per_level=3, log2_hashmap_size=9, base_resolution=3, max_resolution=40
    ),
    "single_level_f8": HashGridConfig(
        n_levels=1, n_features_per_level=8, log2_hashmap_size=8, base_resolution=7
    ),
    "default": HashGridConfig(),
}


@pytest.fixture(scope="module")
def cpp_kernel() -> None:
    """Build (or load the cached build of) the C++ kernel once per session; fail loudly if it cannot build."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on PATH")
    ok, why = hashgrid_cpu.available()
    assert ok, why


def _random_table(cfg: HashGridConfig, seed: int = 0) -> torch.Tensor:
    """Table ``[T_total, F]`` with O(1) values, so that errors are not hidden by a tiny init scale."""
    _, _, offsets = level_layout(cfg)
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(offsets[-1], cfg.n_features_per_level, generator=generator) * 2 - 1


def _test_points(cfg: HashGridConfig, num_random: int = 3000, seed: int = 0) -> torch.Tensor:
    """Random points plus edge cases: corners of the cube, outside points, exact grid vertices. ``[N, 3]``."""
    generator = torch.Generator().manual_seed(seed)
    points = [torch.rand(num_random, 3, generator=generator)]
    corners = torch.tensor([[(i >> d) & 1 for d in range(3)] for i in range(8)], dtype=torch.float32)
    points.append(corners)  # 0 and 1 in every combination
    points.append(torch.tensor([[-0.5, 0.5, 1.5], [-0.0, 1e-8, 1 - 1e-7], [2.0, -1.0, 0.25]]))  # clamped
    scales, _, _ = level_layout(cfg)
    for scale in scales[:4]:  # points whose x * scale + 0.5 lands on integers: exact grid vertices
        k = torch.arange(1, 6, dtype=torch.float32)
        v = ((k - 0.5) / scale).clamp(0, 1)
        points.append(torch.stack([v, v.flip(0), torch.full_like(v, 0.5 / scale)], dim=-1))
    return torch.cat(points)


def _max_relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


# ---------------------------------------------------------------------------------------------- reference


def test_spatial_hash_known_values():
    # uint32 of (c0 * 1) ^ (c1 * 2654435761) ^ (c2 * 805459861), computed by hand
    corners = torch.tensor([[1, 2, 3], [7, 11, 13], [1000, 2000, 3000]])
    expected = torch.tensor([2892625372, 3162261517, 2316627744])
    hashmap_size = 2**19
    index = hashgrid._grid_index(corners, resolution=1000, hashmap_size=hashmap_size)
    assert torch.equal(index, expected % hashmap_size)
    # dense indexing when resolution^3 fits the level: c0 + c1 r + c2 r^2 (mod T)
    assert hashgrid._grid_index(torch.tensor([[1, 2, 3]]), resolution=10, hashmap_size=1000).item() == 321
    assert hashgrid._grid_index(torch.tensor([[10, 9, 9]]), resolution=10, hashmap_size=1000).item() == 0


def test_level_layout_default_config():
    scales, resolutions, offsets = level_layout(HashGridConfig())
    assert scales[0] == 15.0 and resolutions[:6] == [16, 23, 31, 43, 59, 81]
    assert offsets[:6] == [0, 4096, 16264, 46056, 125568, 330952]  # dense levels, padded to multiples of 8
    assert all(b - a == 2**19 for a, b in zip(offsets[5:-1], offsets[6:]))  # hashed levels
    assert 2047 <= scales[-1] <= 2048 and len(offsets) == 17


def _naive_encode_point(x: list[float], table: np.ndarray, cfg: HashGridConfig) -> list[float]:
    """One point, written out corner by corner in float32 scalars (kaolin-style naive version)."""
    f32 = np.float32
    scales, resolutions, offsets = level_layout(cfg)
    out: list[float] = []
    for level, (scale, res) in enumerate(zip(scales, resolutions)):
        size = offsets[level + 1] - offsets[level]
        pos = [f32(min(max(v, 0.0), 1.0)) * f32(scale) + f32(0.5) for v in x]
        base = [int(np.floor(p)) for p in pos]
        frac = [p - f32(b) for p, b in zip(pos, base)]
        acc = np.zeros(cfg.n_features_per_level, dtype=np.float32)
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    c = (base[0] + dx, base[1] + dy, base[2] + dz)
                    if res**3 <= size:
                        index = (c[0] + c[1] * res + c[2] * res * res) % size
                    else:
                        index = ((c[0] * 1) ^ (c[1] * 2654435761) ^ (c[2] * 805459861)) % 2**32 % size
                    w = f32(1)
                    for d, bit in enumerate((dx, dy, dz)):
                        w = w * (frac[d] if bit else f32(1) - frac[d])
                    acc += w * table[offsets[level] + index]
        out.extend(acc.tolist())
    return out


@pytest.mark.parametrize("name", ["dense_only", "hashed_f2", "odd_base_f4"])
def test_reference_matches_naive_per_point(name):
    cfg = CONFIGS[name]
    table = _random_table(cfg)
    x = _test_points(cfg, num_random=6)
    expected = torch.tensor([_naive_encode_point(p, table.numpy(), cfg) for p in x.tolist()])
    actual = hash_grid_encode_reference(x, table, cfg)
    assert actual.shape == (len(x), cfg.output_dim)
    torch.testing.assert_close(actual, expected, rtol=0, atol=2e-6)


# ----------------------------------------------------------------------------------------- C++ kernel


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cpp_matches_reference(cpp_kernel, name):
    cfg = CONFIGS[name]
    x = _test_points(cfg)
    table = _random_table(cfg)
    grad_out = torch.randn(len(x), cfg.output_dim, generator=torch.Generator().manual_seed(1))

    results = {}
    for impl, encode_fn in (("cpp", hash_grid_encode_cpu), ("torch", hash_grid_encode_reference)):
        x_ = x.clone().requires_grad_(True)
        table_ = table.clone().requires_grad_(True)
        out = encode_fn(x_, table_, cfg)
        out.backward(grad_out)
        results[impl] = (out.detach(), table_.grad, x_.grad)
    (out, grad_table, grad_x), (out_ref, grad_table_ref, grad_x_ref) = results["cpp"], results["torch"]

    assert out.shape == (len(x), cfg.output_dim) and out.dtype == torch.float32
    assert _max_relative_error(out, out_ref) <= 1e-6
    # sums of up to thousands of float32 terms per entry; torch accumulates them in another order
    assert _max_relative_error(grad_table, grad_table_ref) <= 1e-5
    assert _max_relative_error(grad_x, grad_x_ref) <= 1e-5
    outside = ((x < 0) | (x > 1)).any(-1)
    assert outside.any() and (grad_x[outside][(x[outside] < 0) | (x[outside] > 1)] == 0).all()


def test_cpp_gradients_only_where_required(cpp_kernel):
    cfg = CONFIGS["hashed_f2"]
    x = _test_points(cfg, num_random=100)
    table = _random_table(cfg).requires_grad_(True)
    hash_grid_encode_cpu(x, table, cfg).sum().backward()
    assert x.grad is None and table.grad is not None

    frozen = _random_table(cfg)
    x_ = x.clone().requires_grad_(True)
    (grad_x,) = torch.autograd.grad(hash_grid_encode_cpu(x_, frozen, cfg).sum(), x_)
    (grad_x_ref,) = torch.autograd.grad(hash_grid_encode_reference(x_, frozen, cfg).sum(), x_)
    assert _max_relative_error(grad_x, grad_x_ref) <= 1e-5


def test_cpp_double_backward_raises(cpp_kernel):
    cfg = CONFIGS["dense_only"]
    x = torch.rand(10, 3, requires_grad=True)
    table = _random_table(cfg).requires_grad_(True)
    out = hash_grid_encode_cpu(x, table, cfg)
    with pytest.raises(T23dError, match=r"differentiable once only: double backward \(create_graph=True"):
        torch.autograd.grad(out.sum(), x, create_graph=True)


def test_cpp_table_gradient_is_deterministic(cpp_kernel):
    cfg = HashGridConfig(n_levels=6, log2_hashmap_size=10, base_resolution=16, max_resolution=256)
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(20000, 3, generator=generator)  # many collisions per table entry
    grad_out = torch.randn(len(x), cfg.output_dim, generator=generator)
    table = _random_table(cfg)

    def gradients(num_threads: int) -> tuple[torch.Tensor, torch.Tensor]:
        previous = torch.get_num_threads()
        torch.set_num_threads(num_threads)
        try:
            x_ = x.clone().requires_grad_(True)
            table_ = table.clone().requires_grad_(True)
            hash_grid_encode_cpu(x_, table_, cfg).backward(grad_out)
            return table_.grad, x_.grad
        finally:
            torch.set_num_threads(previous)

    first, second = gradients(2), gradients(2)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.equal(gradients(1)[0], first[0])  # the table gradient does not depend on the thread count


def test_cpp_empty_input(cpp_kernel):
    cfg = CONFIGS["hashed_f1"]
    table = _random_table(cfg).requires_grad_(True)
    out = hash_grid_encode_cpu(torch.zeros(0, 3), table, cfg)
    assert out.shape == (0, cfg.output_dim)
    out.sum().backward()
    assert torch.equal(table.grad, torch.zeros_like(table))


@pytest.mark.parametrize(
    ("x", "table_rows", "match"),
    [
        (torch.rand(4, 2), None, r"x must have shape \[N, 3\], got \[4, 2\]"),
        (torch.rand(4, 3, dtype=torch.float64), None, "needs float32 x and table, got torch.float64"),
        (torch.rand(4, 3), 7, r"table must have shape \[\d+, 2\] for this config, got \[7, 2\]"),
    ],
)
def test_cpp_rejects_bad_input(cpp_kernel, x, table_rows, match):
    cfg = CONFIGS["hashed_f2"]
    table = _random_table(cfg) if table_rows is None else torch.zeros(table_rows, 2)
    with pytest.raises(T23dError, match=match):
        hash_grid_encode_cpu(x, table, cfg)


def test_encoding_module_cpp_equals_torch(cpp_kernel):
    cfg = CONFIGS["hashed_f2"]
    encodings = {
        impl: HashGridEncoding(HashGridConfig(**{**vars(cfg), "implementation": impl}))
        for impl in ("cpp", "torch")
    }
    assert encodings["cpp"].implementation == "cpp" and encodings["torch"].implementation == "torch"
    encodings["torch"].load_state_dict(encodings["cpp"].state_dict())
    x = torch.rand(500, 3)
    torch.testing.assert_close(encodings["cpp"](x), encodings["torch"](x), rtol=1e-6, atol=1e-9)


# -------------------------------------------------------------------------------- implementation choice


def test_the_build_runs_the_ninja_package_whatever_is_first_on_path(monkeypatch):
    """Two ninja versions discard each other's build log, so the build always uses pip's ninja (a
    dependency), not whichever a process happens to find first on PATH; PATH is restored after."""
    import ninja

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with hashgrid_cpu._ninja_first_on_path():
        assert shutil.which("ninja") == str(Path(ninja.BIN_DIR) / "ninja")
    assert os.environ["PATH"] == "/usr/bin:/bin"


def test_explicit_tcnn_on_cpu_raises_with_cause():
    with pytest.raises(
        T23dError, match=r"'tcnn' is unavailable: .*(no CUDA device|needs a CUDA device|tinycudann)"
    ):
        resolve_implementation("tcnn", torch.device("cpu"))


def test_auto_on_cpu_picks_cpp_when_available(cpp_kernel):
    assert resolve_implementation("auto", torch.device("cpu")) == "cpp"
    assert resolve_implementation("cpp", torch.device("cpu")) == "cpp"
    assert resolve_implementation("torch", torch.device("cpu")) == "torch"


def test_unavailable_cpp_falls_back_under_auto_and_raises_when_explicit(monkeypatch):
    monkeypatch.setattr(hashgrid_cpu, "available", lambda: (False, "no compiler found"))
    assert resolve_implementation("auto", torch.device("cpu")) == "torch"
    with pytest.raises(T23dError, match="'cpp' is unavailable: no compiler found"):
        resolve_implementation("cpp", torch.device("cpu"))


def test_cpp_on_non_cpu_device_and_unknown_implementation_raise():
    with pytest.raises(T23dError, match="'cpp' runs on CPU only, but the field is on meta"):
        resolve_implementation("cpp", torch.device("meta"))
    with pytest.raises(
        T23dError, match="unknown hash-grid implementation 'cuda'; accepted: auto, tcnn, cpp, torch"
    ):
        resolve_implementation("cuda", torch.device("cpu"))  # type: ignore[arg-type]


@pytest.fixture
def tcnn_probe(monkeypatch):
    """Set the tcnn probe's child script for one test; the cached verdict is cleared before and after."""

    def set_probe(script: str) -> None:
        monkeypatch.setattr(hashgrid, "TCNN_PROBE", script)
        hashgrid.tcnn_runs.cache_clear()

    yield set_probe
    hashgrid.tcnn_runs.cache_clear()


def test_tcnn_probe_turns_a_crash_or_an_error_into_a_reason(tcnn_probe):
    """A tcnn build that crashes at its first call kills the probe's child, not this process."""
    tcnn_probe("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    ok, why = hashgrid.tcnn_runs()
    assert not ok and "crashed (SIGSEGV)" in why and "shared libstdc++" in why, why
    tcnn_probe("raise RuntimeError('CUDA error: no kernel image is available')")
    assert hashgrid.tcnn_runs() == (
        False,
        "tinycudann imports but a tiny forward + backward failed "
        "(RuntimeError: CUDA error: no kernel image is available)",
    )
    tcnn_probe("pass")
    assert hashgrid.tcnn_runs() == (True, "")


def test_auto_on_cuda_falls_back_to_the_reference_when_tcnn_does_not_run(monkeypatch):
    """CUDA and an importable tinycudann are not enough: auto takes the reference when the probe fails,
    and an explicit 'tcnn' raises with the probe's reason."""
    import types

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "tinycudann", types.ModuleType("tinycudann"))
    monkeypatch.setattr(hashgrid, "tcnn_runs", lambda: (False, "a tiny forward + backward crashed (SIGSEGV)"))
    assert hashgrid.tcnn_available() == (False, "a tiny forward + backward crashed (SIGSEGV)")
    assert resolve_implementation("auto", torch.device("cuda")) == "torch"
    with pytest.raises(T23dError, match=r"'tcnn' is unavailable: a tiny forward \+ backward crashed"):
        resolve_implementation("tcnn", torch.device("cuda"))
    monkeypatch.setattr(hashgrid, "tcnn_runs", lambda: (True, ""))
    assert resolve_implementation("auto", torch.device("cuda")) == "tcnn"


# --------------------------------------------------------------------------------------------- tcnn (GPU)


@pytest.mark.gpu
def test_tcnn_matches_reference():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("tinycudann")
    cfg = HashGridConfig(
        n_levels=8, log2_hashmap_size=14, base_resolution=16, max_resolution=512, implementation="tcnn"
    )
    encoding = HashGridEncoding(cfg, device="cuda")
    with torch.no_grad():
        encoding.table.copy_(_random_table(cfg).cuda())
    generator = torch.Generator().manual_seed(0)
    # 4000 is not a multiple of 128: exercises the batch padding
    x = torch.rand(4000, 3, generator=generator).cuda().requires_grad_(True)
    grad_out = torch.randn(len(x), cfg.output_dim, generator=generator).cuda()

    out = encoding(x)
    grad_x, grad_table = torch.autograd.grad(out, (x, encoding.table), grad_out)
    x_ref = x.detach().clone().requires_grad_(True)
    table_ref = encoding.table.detach().clone().requires_grad_(True)
    out_ref = hash_grid_encode_reference(x_ref, table_ref, cfg)
    grad_x_ref, grad_table_ref = torch.autograd.grad(out_ref, (x_ref, table_ref), grad_out)

    # tcnn computes each level's scale with its own float32 exp2 (fast-math) and x * scale + 0.5 as one
    # FMA: a point's position in the cell differs from the reference's by a few float32 ulps of the
    # scale, so each level is compared in those units (an O(1) table moves the output by at most ~2 per
    # unit of position; on an H200, session 19, the largest difference was 7 ulps at the finest level,
    # against the reference's own 0.8 from float64). A wrong layout, hash or interpolation is off by O(1).
    scales, _, _ = level_layout(cfg)
    f = cfg.n_features_per_level
    for level, scale in enumerate(scales):
        ulp = scale * 2.0**-23
        diff = (out[:, level * f : (level + 1) * f] - out_ref[:, level * f : (level + 1) * f]).abs().max()
        assert diff.item() <= 64 * ulp, f"level {level}: {diff.item():.2e} = {diff.item() / ulp:.1f} ulps"
    assert _max_relative_error(grad_table, grad_table_ref) <= 2e-3
    # a point within a few ulps of a cell face can land in the neighbouring cell, where d out / d x jumps
    big = (grad_x - grad_x_ref).abs() > 1e-3 * grad_x_ref.abs().max()
    assert big.float().mean().item() <= 1e-3


# ------------------------------------------------------------------- the reference's gather backward


def test_reference_gather_backward_equals_plain_indexing_and_is_twice_differentiable():
    """The reference's table gather (index_add backward, for CUDA speed) gives plain indexing's gradients,
    duplicate rows summed, and its backward is differentiable again (gradgradcheck in float64)."""
    from t23d.field.hashgrid import _GatherRows

    generator = torch.Generator().manual_seed(0)
    table = torch.randn(7, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([[0, 3, 3], [6, 0, 3]])  # repeated rows: their gradients must add up
    upstream = torch.randn(2, 3, 2, generator=generator, dtype=torch.float64)
    (expected,) = torch.autograd.grad((table[index] * upstream).sum(), table)
    (actual,) = torch.autograd.grad((_GatherRows.apply(table, index) * upstream).sum(), table)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    assert actual[3].abs().sum() > 0 and actual[1].abs().sum() == 0  # row 1 is never gathered
    assert torch.autograd.gradgradcheck(lambda t: _GatherRows.apply(t, index) ** 2, (table,))
