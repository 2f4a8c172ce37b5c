"""Benchmark of the asset stage: density grid -> mesh -> decimate -> xatlas -> bake -> GLB.

Field: a sphere of radius 0.6 with a bumpy surface (6 x 5 lobes, amplitude 0.05) and a
high-frequency colour pattern, smooth over ~1 voxel at 256^3. Prints a markdown table row.

    python benchmarks/bench_export.py [--resolution 256] [--faces 50000] [--texture-size 1024]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch


def bumpy_density(p: torch.Tensor) -> torch.Tensor:
    r = p.norm(dim=-1).clamp(min=1e-9)
    theta = torch.atan2(p[:, 1], p[:, 0])
    phi = torch.acos((p[:, 2] / r).clamp(-1, 1))
    radius = 0.6 + 0.05 * torch.sin(6 * theta) * torch.sin(5 * phi)
    return 200.0 * torch.sigmoid((radius - r) / 0.006)


def stripe_color(p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    return (0.5 + 0.5 * torch.sin(12.0 * p + torch.tensor([0.0, 2.0, 4.0]))).clamp(0, 1)


def main() -> None:
    from t23d.export import ExportConfig, export_asset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--faces", type=int, default=50_000)
    ap.add_argument("--texture-size", type=int, default=1024)
    ap.add_argument("--fidelity-views", type=int, default=0, help="needs a field renderer; 0 here")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.INFO)
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    cfg = ExportConfig(
        format="glb", resolution=args.resolution, faces=args.faces, texture_size=args.texture_size,
        fidelity_views=args.fidelity_views,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        r = export_asset(bumpy_density, stripe_color, aabb, Path(tmp), "bench", cfg)
        size_mb = r.asset_path.stat().st_size / 1e6
    t = r.timings
    cols = [
        "extract.grid",
        "extract.marching_cubes",
        "extract.decimate",
        "extract",
        "unwrap",
        "bake",
        "encode",
    ]
    cols += ["preview", "write", "total"]
    print(
        "| grid | faces | tex | " + " | ".join(c.replace("extract.", "") + " s" for c in cols) + " | GLB MB |"
    )
    print("|" + "---|" * (len(cols) + 4))
    row = [f"{args.resolution}^3", f"{r.num_faces}", f"{args.texture_size}^2"]
    row += [f"{t.get(c, 0.0):.2f}" for c in cols] + [f"{size_mb:.2f}"]
    print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
