"""Run directories: one per run, never overwritten, with ``run.json`` recording status and results.

``run.json`` has ``"t23d_run": <kind>`` and ``"status"`` in ``running | completed | interrupted | failed |
export_failed`` (see :mod:`t23d.run.lifecycle`);
a directory without it is not a t23d run. Its ``config.yaml`` holds the resolved configuration.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from t23d.common.atomic import write_json_atomic, write_text_atomic
from t23d.common.config import from_dict, load_yaml, to_dict
from t23d.common.errors import T23dError

RUN_JSON = "run.json"
CONFIG_YAML = "config.yaml"

C = TypeVar("C")


def slug(text: str, max_len: int = 48) -> str:
    """Filesystem-safe lowercase name from free text (``"Stone grotto!"`` -> ``"stone_grotto"``)."""
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return s[:max_len].rstrip("_") or "asset"


def check_writable(folder: Path, option: str = "--out") -> None:
    """Raise a clear error unless files can be created in ``folder`` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".t23d-write-test-"):
            pass
    except OSError as e:
        raise T23dError(
            f"cannot write to the output folder {folder} ({e.strerror or e}); pass a writable folder with {option}"
        ) from e


def create_run_dir(parent: Path, name: str) -> Path:
    """Create ``parent/<name>-<YYYYmmdd-HHMMSS>[-k]``; never reuses an existing directory."""
    check_writable(parent)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{slug(name)}-{stamp}"
    for k in range(1000):
        path = parent / (base if k == 0 else f"{base}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise T23dError(f"could not create a new run directory under {parent}")


def write_config(run_dir: Path, cfg: Any) -> None:
    """Write the resolved config as YAML."""
    import yaml

    write_text_atomic(run_dir / CONFIG_YAML, yaml.safe_dump(to_dict(cfg), sort_keys=False))


LEGACY_KEYS: dict[str, tuple[str, str]] = {
    "sdf_regularisers": ("sdf_training", "SDFTrainingConfig"),
}
"""Top-level config sections renamed since runs were first saved: old key -> (new key, new type)."""


def read_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config saved in a run directory, as a dict, with :data:`LEGACY_KEYS` renamed so
    runs saved by earlier versions still resume and export."""
    data = load_yaml(run_dir / CONFIG_YAML)
    for old, (new, new_type) in LEGACY_KEYS.items():
        if isinstance(data, dict) and old in data and new not in data:
            logging.getLogger(__name__).info("%s: config key %r is now %r", run_dir, old, new)
            section = data.pop(old)
            if isinstance(section, dict) and "type" in section:
                section["type"] = new_type
            data[new] = section
    return data


def read_run(run_dir: Path, kind: str | None = None) -> dict[str, Any]:
    """Read ``run.json``; raise if ``run_dir`` is not a t23d run (of ``kind`` when given)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise T23dError(f"run directory {run_dir} does not exist")
    path = run_dir / RUN_JSON
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or "t23d_run" not in data or not (run_dir / CONFIG_YAML).is_file():
        raise T23dError(
            f"{run_dir} is not a t23d run directory (no valid {RUN_JSON} and {CONFIG_YAML}); "
            "pass a folder created by 't23d generate' or 't23d reconstruct'"
        )
    if kind is not None and data["t23d_run"] != kind:
        raise T23dError(f"{run_dir} is a '{data['t23d_run']}' run, not a '{kind}' run")
    return data


def read_run_config(run_dir: Path, kind: str, cls: type[C]) -> C:
    """The resolved config saved in a ``kind`` run directory, as a ``cls`` (strict, see :func:`read_config`)."""
    read_run(run_dir, kind)
    return from_dict(cls, read_config(run_dir))


def update_run(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run.json`` (atomically)."""
    path = run_dir / RUN_JSON
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    data.update(fields)
    write_json_atomic(path, data)
    return data


def attach_log_file(run_dir: Path) -> logging.Handler:
    """Send ``t23d`` log records to ``run_dir/log.txt`` (appending); returns the handler to detach."""
    handler = logging.FileHandler(run_dir / "log.txt", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("t23d")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    """Undo :func:`attach_log_file`."""
    logging.getLogger("t23d").removeHandler(handler)
    handler.close()


_ = os
