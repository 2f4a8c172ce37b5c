"""Fixtures shared by the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def trained_run(tiny_sd_dir, tmp_path_factory) -> Path:
    """A finished two-step ``generate`` run on the tiny prior (no asset exported), built once. Tests that
    change it copy it first."""
    from optimise.gen_helpers import smoke_config  # tests/ is on sys.path (tests/conftest.py)

    from t23d.optimise.generate import run_generate

    return run_generate(
        smoke_config(tiny_sd_dir, steps=2, export_at_end=False), tmp_path_factory.mktemp("runs")
    )
