"""Time nerfstudio's pure-PyTorch ``HashEncoding`` (forward + backward) on CPU, for comparison with t23d.

Run inside the separate nerfstudio venv (``benchmarks/nerfstudio_venv/setup.sh``), never the product env::

    /tmp/ns-venv/bin/python benchmarks/nerfstudio_venv/bench_ns_hashgrid.py --threads 2

Same problem as ``benchmarks/bench_hashgrid.py``: 2^18 random points in [0, 1]^3, 16 levels x 2 features,
hashmap 2^19, base resolution 16, max resolution 2048; median of several timed runs after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from nerfstudio.field_components.encodings import HashEncoding


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-points", type=int, default=2**18, help="points per forward+backward")
    parser.add_argument("--num-levels", type=int, default=16)
    parser.add_argument("--features-per-level", type=int, default=2)
    parser.add_argument("--log2-hashmap-size", type=int, default=19)
    parser.add_argument("--max-res", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    encoding = HashEncoding(
        num_levels=args.num_levels,
        min_res=16,
        max_res=args.max_res,
        log2_hashmap_size=args.log2_hashmap_size,
        features_per_level=args.features_per_level,
        implementation="torch",
    )
    x = torch.rand(args.num_points, 3)  # [N, 3]
    grad_out = torch.randn(args.num_points, encoding.get_out_dim())  # [N, L * F]

    def step() -> float:
        encoding.zero_grad(set_to_none=True)
        start = time.perf_counter()
        encoding(x).backward(grad_out)
        return time.perf_counter() - start

    step()  # warm-up
    seconds = statistics.median(step() for _ in range(args.repeats))
    print(
        f"torch {torch.__version__}, nerfstudio HashEncoding(implementation='torch'), threads {torch.get_num_threads()}"
    )
    print("| implementation | points | levels x F | hashmap | s / fwd+bwd | points/s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| nerfstudio torch | {args.num_points} | {args.num_levels} x {args.features_per_level} | "
        f"2^{args.log2_hashmap_size} | {seconds:.3f} | {args.num_points / seconds:,.0f} |"
    )


if __name__ == "__main__":
    main()
