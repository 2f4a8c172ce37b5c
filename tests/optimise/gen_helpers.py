"""Shared pieces of the generate tests: a seconds-long config on a tiny prior."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from t23d.common.config import apply_overrides, load_yaml
from t23d.optimise.config import GenerateConfig, preset

REPO = Path(__file__).resolve().parents[2]
SMOKE_YAML = REPO / "configs" / "cpu-smoke.yaml"


def smoke_config(prior: Path, prompt: str = "a red ball", **changes) -> GenerateConfig:
    """The fast preset with configs/cpu-smoke.yaml applied, on the given prior folder, CPU."""
    cfg = apply_overrides(preset("fast"), load_yaml(SMOKE_YAML))
    cfg = dataclasses.replace(
        cfg, prompt=prompt, device="cpu", guidance=dataclasses.replace(cfg.guidance, pretrained=str(prior))
    )
    return dataclasses.replace(cfg, **changes)
