"""benchmarks/bench_cuda.py runs its torch rows anywhere (a dry run of the code the GPU runs)."""

from __future__ import annotations

import re

from benchmarks.bench_cuda import main


def test_bench_cuda_dry_run_on_cpu_prints_both_tables(capsys) -> None:
    main(["--device", "cpu", "--quick"])
    out = capsys.readouterr().out
    assert "tcnn: (False" in out and "nvdiffrast: (False" in out  # no CUDA here: the reasons are printed
    grid = re.search(r"^\| torch \| cpu \| 4,096 \| ([\d.]+) \| ([\d.]+) \|", out, re.M)
    raster = re.search(r"^\| torch \| cpu \| 320 \| 2 x 64² \| ([\d.]+) \|", out, re.M)
    assert grid and raster, out
    assert 0 < float(grid.group(1)) <= float(grid.group(2))  # forward alone is not slower than fwd+bwd
    assert float(raster.group(1)) > 0
