"""Throughput of the hash-grid encoding implementations on CPU (forward + backward).

Times ``hash_grid_encode_cpu`` (the compiled ``cpp`` kernel) and ``hash_grid_encode_reference`` (the
plain-PyTorch ``torch`` specification) on random points in ``[0, 1]^3`` with a random upstream gradient,
and prints one markdown table row per implementation (median of ``--repeats`` runs after a warm-up)::

    python benchmarks/bench_hashgrid.py                      # 2^18 points, 16 levels x 2, hashmap 2^19
    python benchmarks/bench_hashgrid.py --threads 1 --impl cpp --x-grad

Compare with nerfstudio's torch ``HashEncoding`` through ``benchmarks/nerfstudio_venv/``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from t23d.field.hashgrid import HashGridConfig, hash_grid_encode_reference, level_layout
from t23d.field.hashgrid_cpu import available, hash_grid_encode_cpu

ENCODERS: dict[str, Callable[[Tensor, Tensor, HashGridConfig], Tensor]] = {
    "cpp": hash_grid_encode_cpu,
    "torch": hash_grid_encode_reference,
}


def time_encoder(
    encode_fn: Callable[[Tensor, Tensor, HashGridConfig], Tensor],
    cfg: HashGridConfig,
    num_points: int,
    x_grad: bool,
    repeats: int,
) -> tuple[float, float]:
    """Median seconds of (forward, forward + backward) over ``repeats`` runs, after one warm-up run."""
    generator = torch.Generator().manual_seed(0)
    _, _, offsets = level_layout(cfg)
    table = torch.empty(offsets[-1], cfg.n_features_per_level)  # [T_total, F]
    table.uniform_(-cfg.init_scale, cfg.init_scale, generator=generator)
    table.requires_grad_(True)
    x = torch.rand(num_points, 3, generator=generator).requires_grad_(x_grad)  # [N, 3]
    grad_out = torch.randn(num_points, cfg.output_dim, generator=generator)  # [N, L * F]

    def run() -> tuple[float, float]:
        table.grad = None
        x.grad = None
        start = time.perf_counter()
        out = encode_fn(x, table, cfg)  # [N, L * F]
        forward_done = time.perf_counter()
        out.backward(grad_out)
        return forward_done - start, time.perf_counter() - start

    run()  # warm-up (and, for cpp, loading the extension)
    timings = [run() for _ in range(repeats)]
    return statistics.median(t[0] for t in timings), statistics.median(t[1] for t in timings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-points", type=int, default=2**18, help="points per forward+backward")
    parser.add_argument("--num-levels", type=int, default=16)
    parser.add_argument("--features-per-level", type=int, default=2)
    parser.add_argument("--log2-hashmap-size", type=int, default=19)
    parser.add_argument("--base-resolution", type=int, default=16)
    parser.add_argument("--max-resolution", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs; the median is reported")
    parser.add_argument("--impl", choices=[*ENCODERS, "all"], default="all", help="implementation(s) to time")
    parser.add_argument("--x-grad", action="store_true", help="also compute the gradient w.r.t. the points")
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = HashGridConfig(
        n_levels=args.num_levels,
        n_features_per_level=args.features_per_level,
        log2_hashmap_size=args.log2_hashmap_size,
        base_resolution=args.base_resolution,
        max_resolution=args.max_resolution,
    )
    names = list(ENCODERS) if args.impl == "all" else [args.impl]
    if "cpp" in names:
        ok, why = available()
        if not ok:
            raise SystemExit(f"the cpp kernel is unavailable: {why}")

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, x grad {args.x_grad}")
    print("| implementation | points | levels x F | hashmap | s / fwd | s / fwd+bwd | points/s (fwd+bwd) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        forward_s, total_s = time_encoder(ENCODERS[name], cfg, args.num_points, args.x_grad, args.repeats)
        print(
            f"| {name} | {args.num_points} | {cfg.n_levels} x {cfg.n_features_per_level} | "
            f"2^{cfg.log2_hashmap_size} | {forward_s:.4f} | {total_s:.4f} | {args.num_points / total_s:,.0f} |"
        )


if __name__ == "__main__":
    main()
