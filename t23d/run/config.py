"""Configuration shared by every training loop: the optimiser, and the checks of the keys every
training config has (seed, steps, checkpoints, optimiser, sampling, field size)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from t23d.common.config import Rule, check_finite_numbers, check_rules, is_int, is_number
from t23d.common.errors import ConfigError


@dataclass
class OptimConfig:
    """Adam with per-group learning rates."""

    lr_grid: float = 1e-2
    """Learning rate of the hash-grid table."""
    lr_mlp: float = 1e-3
    """Learning rate of the density and colour MLPs."""
    lr_background: float = 1e-3
    """Learning rate of a learned background."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam's betas."""
    eps: float = 1e-15
    """Adam's epsilon (tiny, as instant-ngp, so rarely-touched hash entries still move)."""


#: Largest seed accepted: ``torch.Generator.manual_seed`` takes 64-bit values and the loops also seed a
#: second generator with ``seed + 1``.
MAX_SEED = 2**63 - 2


def training_rules() -> list[Rule]:
    """Constraints on the keys the training configs share (``generate``, ``reconstruct``, ``refine``; a
    key a config does not have is skipped)."""
    grid = "field.grid"
    return [
        Rule("seed", is_int(0, MAX_SEED), f"an integer in 0 .. {MAX_SEED}", "--seed"),
        Rule("steps", is_int(1), "an integer >= 1", "--steps"),
        Rule("checkpoint_every", is_int(1), "an integer >= 1 (steps between checkpoints)"),
        Rule("keep_checkpoints", is_int(1), "an integer >= 1"),
        Rule("optim.lr_grid", is_number(0), "a finite number >= 0"),
        Rule("optim.lr_mlp", is_number(0), "a finite number >= 0"),
        Rule("optim.lr_background", is_number(0), "a finite number >= 0"),
        Rule("optim.lr_offsets", is_number(0), "a finite number >= 0"),
        Rule("optim.betas", lambda b: len(b) == 2 and all(0 <= x < 1 for x in b), "two numbers in [0, 1)"),
        Rule("optim.eps", is_number(0, open_lo=True), "a number > 0"),
        Rule("render.num_samples", is_int(1), "an integer >= 1"),
        Rule("render.chunk_rays", is_int(1), "an integer >= 1"),
        Rule("render.weight_threshold", is_number(0, 1), "a number in [0, 1]"),
        Rule("render.early_stop_transmittance", is_number(0, 1), "a number in [0, 1]"),
        Rule("render.occupancy.resolution", is_int(2), "an integer >= 2"),
        Rule("render.occupancy.update_every", is_int(1), "an integer >= 1"),
        Rule("render.occupancy.warmup_steps", is_int(0), "an integer >= 0"),
        Rule("render.occupancy.decay", is_number(0, 1), "a number in [0, 1]"),
        Rule("render.occupancy.alpha_threshold", is_number(0, 1), "a number in [0, 1]"),
        Rule("render.occupancy.coarse_factor", is_int(1), "an integer >= 1"),
        Rule("field.bound", is_number(0, open_lo=True), "a number > 0"),
        Rule("field.hidden_dim", is_int(1), "an integer >= 1"),
        Rule("field.num_hidden_layers", is_int(0), "an integer >= 0"),
        Rule("field.color_hidden_dim", is_int(1), "an integer >= 1"),
        Rule("field.color_num_hidden_layers", is_int(0), "an integer >= 0"),
        Rule(f"{grid}.n_levels", is_int(1, 64), "an integer in 1 .. 64"),
        Rule(f"{grid}.n_features_per_level", is_int(1, 8), "an integer in 1 .. 8"),
        Rule(f"{grid}.log2_hashmap_size", is_int(4, 30), "an integer in 4 .. 30"),
        Rule(f"{grid}.base_resolution", is_int(2), "an integer >= 2"),
        Rule(f"{grid}.max_resolution", is_int(2), "an integer >= 2 (and >= base_resolution)"),
    ]


def validate_training_config(cfg: Any, rules: list[Rule]) -> None:
    """Refuse a training config before any work starts: every number finite, then ``rules`` (the shared
    :func:`training_rules` plus the loop's own), naming the key, the value and what is accepted."""
    check_finite_numbers(cfg)
    check_rules(cfg, rules)
    grid = getattr(getattr(cfg, "field", None), "grid", None)
    if grid is not None and grid.max_resolution < grid.base_resolution:
        raise ConfigError(
            f"config key 'field.grid.max_resolution': invalid value {grid.max_resolution}; accepted: an integer "
            f">= field.grid.base_resolution ({grid.base_resolution})"
        )
