"""Checkpoints: tensors in safetensors plus a small JSON state, written atomically.

Layout inside a run's ``checkpoints/`` folder::

    step_0000100.safetensors   all tensors (model parameters, optimiser moments, RNG state, grids)
    step_0000100.json          small state (step, learning rates, implementation, ...)
    latest.json                {"step": 100, "tensors": "...safetensors", "state": "...json"}

``latest.json`` is replaced (atomically) only after both files of a checkpoint are complete, so a
crash at any moment leaves the previous checkpoint valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from t23d.common.atomic import write_json_atomic, write_with_atomic
from t23d.common.errors import T23dError

LATEST = "latest.json"


def save_checkpoint(
    ckpt_dir: Path, step: int, tensors: dict[str, Tensor], state: dict[str, Any], keep_last: int = 2
) -> Path:
    """Write checkpoint ``step`` and point ``latest.json`` at it; keep the ``keep_last`` newest ones."""
    from safetensors.torch import save_file

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stem = f"step_{step:07d}"
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    write_with_atomic(ckpt_dir / f"{stem}.safetensors", lambda p: save_file(tensors, str(p)))
    write_json_atomic(ckpt_dir / f"{stem}.json", {"step": step, **state})
    write_json_atomic(
        ckpt_dir / LATEST, {"step": step, "tensors": f"{stem}.safetensors", "state": f"{stem}.json"}
    )
    existing = sorted(ckpt_dir.glob("step_*.safetensors"))
    for old in existing[: max(0, len(existing) - keep_last)]:
        if old.stem != stem:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
    return ckpt_dir / f"{stem}.safetensors"


def has_checkpoint(ckpt_dir: Path) -> bool:
    """Whether ``ckpt_dir`` holds a complete checkpoint."""
    return (ckpt_dir / LATEST).is_file()


def load_checkpoint(ckpt_dir: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load the latest checkpoint's tensors and state; clear errors when absent or damaged."""
    from safetensors.torch import load_file

    latest = ckpt_dir / LATEST
    if not latest.is_file():
        raise T23dError(f"no checkpoint in {ckpt_dir} (missing {LATEST}); the run never saved one")
    try:
        pointer = json.loads(latest.read_text())
        tensors = load_file(str(ckpt_dir / pointer["tensors"]))
        state = json.loads((ckpt_dir / pointer["state"]).read_text())
    except (OSError, ValueError, KeyError) as e:
        raise T23dError(f"checkpoint in {ckpt_dir} is unreadable ({type(e).__name__}: {e})") from e
    return tensors, state


def prefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """``{prefix + '.' + k: v}``."""
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Entries of ``tensors`` under ``prefix.``, with the prefix removed."""
    p = prefix + "."
    return {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimiser's state into tensors (moments, step counts) and JSON (param groups)."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups}


def load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    groups = meta["param_groups"]
    for g in groups:
        for k, v in list(g.items()):
            if isinstance(v, list) and k == "betas":
                g[k] = tuple(v)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
