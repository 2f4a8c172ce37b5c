"""The math-library settings made before torch loads (``t23d.common.runtime``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t23d.common.runtime import DEFAULTS, prepare_runtime

_PROBE = """
import json, os, sys
from t23d.common.runtime import prepare_runtime
first = prepare_runtime()
import torch
names = json.loads(sys.argv[1])
print(json.dumps({"set": first, "env": {k: os.environ.get(k) for k in names}, "after_torch": prepare_runtime()}))
"""


def _probe(env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(sorted(DEFAULTS))],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_defaults_are_set_before_torch_loads_and_user_values_kept():
    base = {k: v for k, v in os.environ.items() if k not in DEFAULTS}
    fresh = _probe(base)
    assert fresh["set"] == DEFAULTS == fresh["env"]
    assert fresh["after_torch"] == {}  # too late once torch has read the environment
    kept = _probe(base | {"OMP_WAIT_POLICY": "ACTIVE"})
    assert kept["env"] == {"OMP_WAIT_POLICY": "ACTIVE"} and kept["set"] == {}


def test_this_test_process_has_the_settings():
    """conftest.py calls prepare_runtime before torch loads, as the CLI does."""
    assert prepare_runtime() == {}  # torch is loaded by now
    for k in DEFAULTS:
        assert os.environ.get(k), k


def test_deterministic_algorithms_make_gather_gradients_repeat_bit_for_bit():
    """The backward of ``x[index]`` on CPU adds with atomics when torch has threads: without the context
    almost every repetition differs in the last bits (190 of 199 when measured); within it, none may."""
    import torch
    import torch.utils.deterministic as det

    from t23d.common.runtime import deterministic_algorithms

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gen = torch.Generator().manual_seed(0)
        v = torch.randn(5000, 3, generator=gen, requires_grad=True)
        index = torch.randint(0, 5000, (200_000,), generator=gen)
        w = torch.randn(200_000, 3, generator=gen)
        with deterministic_algorithms(True):
            assert torch.are_deterministic_algorithms_enabled() and not det.fill_uninitialized_memory
            grads = []
            for _ in range(30):
                v.grad = None
                (v[index] * w).sum().backward()
                grads.append(v.grad.clone())
        assert all(torch.equal(grads[0], g) for g in grads[1:])
        assert not torch.are_deterministic_algorithms_enabled()  # restored
    finally:
        torch.set_num_threads(threads)


_FAULTS = """
import json, resource, sys
import torch
from t23d.common.runtime import reuse_freed_memory
changed = reuse_freed_memory() if sys.argv[1] == "on" else False
faults = []
for _ in range(16):  # a training step's big buffer: allocated, written, freed, again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2**20 // 4).sum()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"changed": changed, "faults": faults}))
"""


def _faults(mode: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_reuse_freed_memory_stops_large_blocks_faulting_in_at_every_allocation():
    """A 64 MiB tensor allocated again after it was freed: by default glibc maps it afresh (one page fault
    per 4 KiB page, 16,384, every time); with :func:`reuse_freed_memory` it comes from the heap's kept
    memory (faulted in again only while the heap's free blocks are still too small for it: measured, 1-4
    of 15 repeats). A user's own ``MALLOC_*`` setting is left alone."""
    from t23d.common.runtime import MALLOC_ENV, _glibc

    if not _glibc():
        pytest.skip("glibc's allocator only (this C library is not glibc)")
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists() and "[always]" in thp.read_text():
        pytest.skip("transparent huge pages 'always': 2 MiB faults, not the 4 KiB ones this counts")
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    default, reused = _faults("off", env), _faults("on", env)
    assert reused["changed"] is True
    assert min(default["faults"][1:]) > 10_000, default  # each allocation faulted in again
    assert sum(f < 1_000 for f in reused["faults"][1:]) >= 8, reused  # most come from kept memory
    assert _faults("on", env | {"MALLOC_TRIM_THRESHOLD_": "1000000"})["changed"] is False
