"""The optional CUDA paths side by side with their PyTorch references, on one GPU: agreement and speed.

Two tables, each row the median of ``--repeats`` timed runs after a warm-up (``torch.cuda.synchronize``
around every timing):

- **hash grid**: the encoding as the field uses it (``HashGridEncoding``, so tcnn goes through t23d's own
  functional hand-over of the table), forward and forward + backward (table and point gradients) on
  random points, for ``tcnn`` (tiny-cuda-nn, when it imports), ``torch`` (the reference) and the
  reference with a plain-indexing gather (its CUDA backward before session 15, for comparison; on CPU
  the reference always gathers that way), plus the largest forward difference between tcnn and the
  reference on the same table;
- **rasteriser**: ``Rasterizer.rasterize`` + ``interpolate`` + ``antialias`` + backward on an icosphere
  seen by a batch of orbit cameras, for ``nvdiffrast`` (when it imports) and ``torch``, plus the share
  of pixels whose triangle id agrees.

::

    python benchmarks/bench_cuda.py                        # on a CUDA machine
    python benchmarks/bench_cuda.py --device cpu --quick   # the same code on CPU (torch rows only)

Needs no model weights. The numbers go into benchmarks/RESULTS.md ("CUDA paths").
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch

from t23d.field import hashgrid
from t23d.field.hashgrid import HashGridConfig, HashGridEncoding, tcnn_available
from t23d.render.cameras import orbit_cameras
from t23d.render.diffrast import Rasterizer, RasterizerConfig, interpolate, nvdiffrast_available


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def _plain_indexing_gather(enabled: bool):
    """Within the block, the reference gathers with plain ``table[index]`` (an ``index_put_`` backward),
    as before session 15, for a side-by-side timing of the two backwards."""
    if not enabled:
        yield
        return
    original = hashgrid._GatherRows
    hashgrid._GatherRows = SimpleNamespace(apply=lambda table, index: table[index])  # type: ignore[assignment]
    try:
        yield
    finally:
        hashgrid._GatherRows = original


def bench_hashgrid(device: torch.device, num_points: int, repeats: int) -> list[str]:
    """Markdown rows: per implementation, seconds per forward / forward+backward and points/s."""
    impls = ["torch", "torch, plain-indexing backward"]
    if device.type == "cuda" and tcnn_available()[0]:
        impls.insert(0, "tcnn")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(num_points, 3, generator=generator).to(device)  # [N, 3]
    table = None
    outputs = {}
    rows = []
    for impl in impls:
        # the field's default grid: 16 levels x 2, 2^19
        cfg = HashGridConfig(implementation="torch" if impl.startswith("torch") else impl)
        enc = HashGridEncoding(cfg, device=device)
        if table is None:
            table = enc.table.detach().clone()
        with torch.no_grad():
            enc.table.copy_(table)
        grad_out = torch.randn(num_points, cfg.output_dim, generator=generator).to(device)  # [N, L*F]
        xg = x.clone().requires_grad_(True)

        def forward(enc=enc):
            with torch.no_grad():
                return enc(x)

        def forward_backward(enc=enc, xg=xg, grad_out=grad_out):
            enc.table.grad = None
            xg.grad = None
            enc(xg).backward(grad_out)

        with _plain_indexing_gather(impl.endswith("plain-indexing backward")):
            outputs[impl] = forward()
            fwd = median_seconds(forward, device, repeats)
            total = median_seconds(forward_backward, device, repeats)
        rows.append(
            f"| {impl} | {device.type} | {num_points:,} | {fwd * 1e3:.2f} | {total * 1e3:.2f} | "
            f"{num_points / total / 1e6:,.1f} |"
        )
    if "tcnn" in outputs:
        diff = (outputs["tcnn"] - outputs["torch"]).abs().max().item()
        rows.append(f"| (max forward difference tcnn vs torch: {diff:.2e}) | | | | | |")
    return rows


def bench_rasteriser(
    device: torch.device, subdivisions: int, resolution: int, views: int, repeats: int
) -> list[str]:
    """Markdown rows: per backend, seconds per rasterise + interpolate + antialias + backward."""
    import trimesh

    backends = ["torch"]
    if device.type == "cuda" and nvdiffrast_available()[0]:
        backends.insert(0, "nvdiffrast")
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.7)
    verts = torch.tensor(mesh.vertices, dtype=torch.float32, device=device)  # [V, 3]
    faces = torch.tensor(mesh.faces, dtype=torch.int64, device=device)  # [F, 3]
    cams = orbit_cameras(views, resolution, distance=2.0, fov_deg=50.0).cameras.to(device)
    colors = torch.rand(len(verts), 3, generator=torch.Generator().manual_seed(0)).to(device)  # [V, 3]
    tris = {}
    rows = []
    for backend in backends:
        rast = Rasterizer(RasterizerConfig(backend=backend), device)
        topology = rast.topology(faces, len(verts))

        def step(rast=rast, topology=topology):
            v = verts.clone().requires_grad_(True)
            out = rast.rasterize(v, faces, cams)
            img = interpolate(colors, out, faces)  # [B, H, W, 3]
            img = rast.antialias(img, out, faces, topology)
            img.square().sum().backward()
            return out

        tris[backend] = step().tri
        seconds = median_seconds(step, device, repeats)
        pixels = views * resolution * resolution
        rows.append(
            f"| {backend} | {device.type} | {len(faces):,} | {views} x {resolution}² | {seconds * 1e3:.1f} | "
            f"{pixels / seconds / 1e6:,.1f} |"
        )
    if len(tris) == 2:
        agree = (tris["nvdiffrast"] == tris["torch"]).float().mean().item()
        rows.append(f"| (triangle ids agree on {agree:.2%} of pixels) | | | | | |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--points", type=int, default=2**20, help="points per hash-grid batch")
    parser.add_argument(
        "--subdivisions", type=int, default=6, help="icosphere subdivisions (6: 81,920 faces)"
    )
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="small sizes (a dry run of the code)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.quick:
        args.points, args.subdivisions, args.resolution, args.views, args.repeats = 2**12, 2, 64, 2, 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}, torch {torch.__version__}")
    print(f"tcnn: {tcnn_available()}; nvdiffrast: {nvdiffrast_available()}")
    print("\n| hash grid | device | points | ms / forward | ms / fwd+bwd | M points/s (fwd+bwd) |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(bench_hashgrid(device, args.points, args.repeats)))
    print("\n| rasteriser | device | faces | batch | ms / raster+interp+AA+bwd | M pixels/s |")
    print("|---|---|---:|---|---:|---:|")
    print("\n".join(bench_rasteriser(device, args.subdivisions, args.resolution, args.views, args.repeats)))


if __name__ == "__main__":
    main()
