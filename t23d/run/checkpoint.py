"""Checkpoints: tensors in safetensors plus a small JSON state, written atomically.

Layout inside a run's ``checkpoints/`` folder::

    step_0000100.safetensors   all tensors (model parameters, optimiser moments, RNG state, grids)
    step_0000100.json          small state (step, learning rates, implementation, ...)
    latest.json                {"step": 100, "tensors": "...safetensors", "state": "...json"}

``latest.json`` is replaced (atomically) only after both files of a checkpoint are complete, so a
crash at any moment leaves the previous checkpoint valid. Loading falls back to the newest older
checkpoint, with a warning, when the latest one is missing or damaged.
"""

from __future__ import annotations

import errno
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from t23d.common.atomic import write_bytes_atomic, write_json_atomic
from t23d.common.errors import T23dError

logger = logging.getLogger(__name__)

LATEST = "latest.json"
_STEP_RE = re.compile(r"^step_(\d{7,})\.safetensors$")


class CheckpointWriteError(T23dError):
    """A checkpoint could not be written (disk full, permissions); the previous one is still valid."""


def save_checkpoint(
    ckpt_dir: Path, step: int, tensors: dict[str, Tensor], state: dict[str, Any], keep_last: int = 2
) -> Path:
    """Write checkpoint ``step`` and point ``latest.json`` at it; keep the ``keep_last`` newest ones.

    The tensors are serialised in memory and written through :func:`write_bytes_atomic`, so the only
    temporary file is one whose name t23d controls (safetensors' ``save_file`` would write its own
    hidden ``.tmpXXXXXX`` file, mode 0600, that a killed process leaves behind). A failed write raises
    :class:`CheckpointWriteError` naming the cause and leaves the previous checkpoint in place.
    """
    from safetensors.torch import save

    stem = f"step_{step:07d}"
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        write_bytes_atomic(ckpt_dir / f"{stem}.safetensors", data)
        del data
        write_json_atomic(ckpt_dir / f"{stem}.json", {"step": step, **state})
        write_json_atomic(
            ckpt_dir / LATEST, {"step": step, "tensors": f"{stem}.safetensors", "state": f"{stem}.json"}
        )
    except OSError as e:
        previous = latest_step(ckpt_dir)
        kept = (
            f"the previous checkpoint (step {previous}) is kept"
            if previous is not None
            else "no checkpoint exists yet"
        )
        hint = " Free disk space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else " Check the folder"
        raise CheckpointWriteError(
            f"cannot write the checkpoint of step {step} to {ckpt_dir}: {e.strerror or e}; {kept}.{hint}, "
            "then resume the run with --resume"
        ) from e
    existing = sorted(ckpt_dir.glob("step_*.safetensors"))
    for old in existing[: max(0, len(existing) - keep_last)]:
        if old.stem != stem:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
    return ckpt_dir / f"{stem}.safetensors"


def latest_step(ckpt_dir: Path) -> int | None:
    """The step ``latest.json`` points at, or None when it is missing or unreadable."""
    try:
        return int(json.loads((ckpt_dir / LATEST).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class CheckpointFiles:
    """One checkpoint on disk: its step and its two files."""

    step: int
    tensors: Path
    state: Path


def list_checkpoints(ckpt_dir: Path) -> list[CheckpointFiles]:
    """Every checkpoint whose two files exist, newest first (``latest.json``'s one first of all)."""
    found: list[CheckpointFiles] = []
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            m = _STEP_RE.match(p.name)
            if m and p.with_suffix(".json").is_file():
                found.append(CheckpointFiles(int(m.group(1)), p, p.with_suffix(".json")))
    found.sort(key=lambda c: c.step, reverse=True)
    try:
        pointer = json.loads((ckpt_dir / LATEST).read_text())
        head = CheckpointFiles(
            int(pointer["step"]), ckpt_dir / pointer["tensors"], ckpt_dir / pointer["state"]
        )
        found = [head] + [c for c in found if c.tensors != head.tensors]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return found


def has_checkpoint(ckpt_dir: Path) -> bool:
    """Whether ``ckpt_dir`` holds a checkpoint (``latest.json``, or step files it lost)."""
    return bool(list_checkpoints(ckpt_dir))


def _read(files: CheckpointFiles) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    state = json.loads(files.state.read_text())
    if not isinstance(state, dict) or int(state.get("step", -1)) != files.step:
        raise ValueError(f"{files.state.name} does not describe step {files.step}")
    return load_file(str(files.tensors)), state


def load_checkpoint(ckpt_dir: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load the latest readable checkpoint's tensors and state.

    The checkpoint ``latest.json`` names comes first; when it (or ``latest.json``) is missing or
    damaged, the newest older checkpoint that loads is used instead, with a warning naming what was
    skipped. Raises :class:`T23dError` naming every file tried when none loads.
    """
    candidates = list_checkpoints(ckpt_dir)
    if not candidates:
        raise T23dError(
            f"no checkpoint in {ckpt_dir} (no {LATEST} and no step_*.safetensors with its .json); "
            "the run never saved one"
        )
    if not (ckpt_dir / LATEST).is_file():
        logger.warning("%s has no %s; looking for the newest checkpoint file instead", ckpt_dir, LATEST)
    problems: list[str] = []
    for files in candidates:
        try:
            tensors, state = _read(files)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError, not an OSError
            problems.append(f"{files.tensors.name}: {type(e).__name__}: {e}")
            logger.warning(
                "checkpoint of step %d in %s is unreadable (%s)", files.step, ckpt_dir, problems[-1]
            )
            continue
        if problems:
            logger.warning(
                "using the previous checkpoint, step %d, instead (the steps after it will be trained again)",
                files.step,
            )
        return tensors, state
    raise T23dError(
        f"no readable checkpoint in {ckpt_dir}; tried: {'; '.join(problems)}. The run cannot be resumed or "
        "exported; start a new run"
    )


def check_resumable(ckpt_dir: Path, run_dir: Path) -> int:
    """Before a resume does any work: the step of the checkpoint it will continue from (loading it, so a
    damaged one is found now and the fallback's warning comes first); raises a clear error when none
    loads."""
    if not has_checkpoint(ckpt_dir):
        raise T23dError(f"{run_dir} has no checkpoint to resume from; start a new run instead")
    return int(load_checkpoint(ckpt_dir)[1]["step"])


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
