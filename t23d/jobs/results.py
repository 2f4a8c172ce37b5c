"""Reading a job's run directory: live progress, metrics and the files a page or a summary can show.

The run directory is the CLI's own (``run.json``, ``progress.json`` written by the training loop,
``previews/``, ``export/``, ``metrics.json``). Everything here only reads, tolerates half-written
or missing files (a run in progress), and never returns a path outside the run directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from t23d.jobs.process import JobPaths
from t23d.jobs.spec import find_run_dir
from t23d.jobs.store import Job

PROGRESS_JSON = "progress.json"
PREVIEW_CANDIDATES = ("previews/grid.png", "previews/latest.png")  # the end-of-run grid once it exists


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def job_run_dir(job: Job, paths: JobPaths) -> Path | None:
    """The job's run directory (recorded in the store, else found in its ``runs/`` folder)."""
    if job.run_dir and Path(job.run_dir).is_dir():
        return Path(job.run_dir)
    return find_run_dir(paths.runs)


def safe_file(run_dir: Path, rel: str) -> Path | None:
    """``run_dir/rel`` if it is a regular file inside ``run_dir`` (no ``..``, no symlink escapes)."""
    if (
        not rel
        or rel.startswith(("/", "\\"))
        or "\\" in rel
        or any(p in ("", ".", "..") for p in rel.split("/"))
    ):
        return None
    root = run_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def asset_path(run_dir: Path) -> Path | None:
    """The exported asset (``export/*.glb``), if any."""
    report = _read_json(run_dir / "export" / "export.json")
    if report and report.get("asset_path"):
        name = Path(str(report["asset_path"])).name
        found = safe_file(run_dir, f"export/{name}")
        if found is not None and found.suffix == ".glb":
            return found
    glbs = sorted((run_dir / "export").glob("*.glb")) if (run_dir / "export").is_dir() else []
    return glbs[0] if glbs else None


def progress(job: Job, run_dir: Path | None) -> dict[str, Any]:
    """Step, total steps, loss, ETA and phase of a job, from ``progress.json`` / ``run.json``."""
    out: dict[str, Any] = {
        "step": 0,
        "steps": getattr(job.spec, "steps", None),
        "loss": None,
        "eta_s": None,
        "phase": None,
    }
    if run_dir is None:
        out["phase"] = "starting" if job.status == "running" else None
        return out
    run = _read_json(run_dir / "run.json") or {}
    if run.get("steps"):
        out["steps"] = int(run["steps"])
    if run.get("completed_steps") is not None:
        out["step"] = int(run["completed_steps"])
    prog = _read_json(run_dir / PROGRESS_JSON)
    if prog:
        out["step"] = int(prog.get("step", out["step"]))
        out["steps"] = int(prog.get("total_steps", out["steps"] or 0)) or out["steps"]
        out["loss"] = prog.get("loss")
        out["phase"] = prog.get("phase")
        eta = prog.get("eta_s")
        if eta is not None and job.status == "running":
            # the file is written every few steps: count down from when it was written
            age = max(0.0, time.time() - float(prog.get("time", time.time())))
            out["eta_s"] = max(0.0, float(eta) - age)
    if job.status == "completed" and out["steps"]:
        out["step"] = out["steps"]
    return out


def _exists(run_dir: Path, rel: str) -> bool:
    """A fixed (not user-given) relative path is a file of the run."""
    return (run_dir / rel).is_file()


def files(run_dir: Path | None) -> dict[str, str | None]:
    """Paths (relative to the run directory) of the files the page shows."""
    if run_dir is None:
        return {"preview": None, "turntable": None, "asset": None, "asset_preview": None}
    preview = next((rel for rel in PREVIEW_CANDIDATES if _exists(run_dir, rel)), None)
    asset = asset_path(run_dir) if (run_dir / "export").is_dir() else None
    asset_preview = None
    if asset is not None and _exists(run_dir, f"export/{asset.stem}_preview.png"):
        asset_preview = f"export/{asset.stem}_preview.png"
    return {
        "preview": preview,
        "turntable": "previews/turntable.gif" if _exists(run_dir, "previews/turntable.gif") else None,
        "asset": f"export/{asset.name}" if asset is not None else None,
        "asset_preview": asset_preview,
    }


def metrics(run_dir: Path | None) -> dict[str, Any]:
    """Held-out PSNR/SSIM (photo runs), mesh-vs-field fidelity, faces, vertices and asset size."""
    out: dict[str, Any] = {}
    if run_dir is None:
        return out
    held_out = _read_json(run_dir / "metrics.json")
    if held_out:
        for key in ("psnr", "ssim", "num_test_views"):
            if isinstance(held_out.get(key), (int, float)):
                out[f"held_out_{key}"] = held_out[key]
    report = _read_json(run_dir / "export" / "export.json")
    if report:
        fidelity = report.get("fidelity") or {}
        for key in ("psnr", "iou"):
            if isinstance(fidelity.get(key), (int, float)):
                out[f"fidelity_{key}"] = fidelity[key]
        for key in ("num_faces", "num_vertices", "texture_size"):
            if isinstance(report.get(key), int):
                out[key] = report[key]
    asset = asset_path(run_dir)
    if asset is not None:
        out["asset_bytes"] = asset.stat().st_size
    return out


def job_view(job: Job, paths: JobPaths) -> dict[str, Any]:
    """Everything the API returns for a job."""
    run_dir = job_run_dir(job, paths)
    view = job.to_dict()
    view.update(progress(job, run_dir))
    view["files"] = files(run_dir)
    view["metrics"] = metrics(run_dir) if job.status in ("completed", "failed", "cancelled") else {}
    view["has_run_dir"] = run_dir is not None
    view["resumable"] = bool(run_dir and (run_dir / "checkpoints" / "latest.json").is_file())
    return view
