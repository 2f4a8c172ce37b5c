"""Batches: many jobs from a prompts file or a folder of captures, run by local workers or Ray.

A batch folder is a job service's data folder (``t23d-jobs.sqlite3``, ``jobs/<id>/``) plus the
summary it writes: ``summary.json``, ``summary.csv`` and ``index.html`` (a gallery page with relative
links, so the folder can be copied or served as it is). Each item has a stable key (the prompt and its
occurrence, or the capture's folder name): rerunning the same batch skips finished items, resumes
failed or cancelled ones from their checkpoint, and adds new ones.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t23d.common.atomic import write_text_atomic
from t23d.common.errors import T23dError
from t23d.jobs import results
from t23d.jobs.process import JobPaths
from t23d.jobs.service import JobService, ServiceConfig
from t23d.jobs.spec import GenerateSpec, JobSpec, ReconstructSpec
from t23d.jobs.store import TERMINAL, Job

logger = logging.getLogger(__name__)
SUMMARY_FIELDS = (
    "key", "kind", "title", "status", "job_id", "attempts", "duration_s", "run_dir", "asset", "preview",
    "turntable", "fidelity_psnr", "held_out_psnr", "num_faces", "asset_bytes", "error",
)  # fmt: skip


@dataclass
class BatchItem:
    """One job of a batch."""

    key: str
    """Stable identity across reruns."""
    spec: JobSpec
    """What to compute."""


def read_prompts(path: Path, template: GenerateSpec) -> list[BatchItem]:
    """One generate item per non-empty line of ``path`` (``#`` starts a comment line)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise T23dError(f"cannot read the prompts file {path}: {e.strerror or e}") from e
    items, seen = [], {}
    for line in lines:
        prompt = line.strip()
        if not prompt or prompt.startswith("#"):
            continue
        seen[prompt] = seen.get(prompt, 0) + 1
        key = f"prompt:{prompt}" + (f"#{seen[prompt]}" if seen[prompt] > 1 else "")
        items.append(BatchItem(key, dataclasses.replace(template, prompt=prompt)))
    if not items:
        raise T23dError(f"the prompts file {path} has no prompts (one per line; '#' starts a comment)")
    return items


def read_captures(folder: Path, template: ReconstructSpec) -> list[BatchItem]:
    """One reconstruct item per sub-folder of ``folder`` (each a capture in any format t23d reads)."""
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise T23dError(f"{folder} has no capture folders (one sub-folder per capture)")
    return [
        BatchItem(f"capture:{p.name}", dataclasses.replace(template, input=str(p.resolve()))) for p in subs
    ]


def read_batch(source: Path, generate: GenerateSpec, reconstruct: ReconstructSpec) -> list[BatchItem]:
    """Items from a prompts file (``.txt``) or a folder of captures."""
    if source.is_dir():
        return read_captures(source, reconstruct)
    if source.is_file():
        return read_prompts(source, generate)
    raise T23dError(f"{source} is neither a prompts file nor a folder of captures")


def enqueue(service: JobService, items: list[BatchItem]) -> tuple[list[Job], dict[str, int]]:
    """Submit new items, resume failed/cancelled ones, skip finished ones; returns the batch's jobs."""
    jobs, counts = [], {"new": 0, "skipped": 0, "resumed": 0, "pending": 0}
    for item in items:
        job = service.store.find_batch_key(item.key)
        if job is None:
            job = service.submit(item.spec, batch_key=item.key)
            counts["new"] += 1
        elif job.status == "completed":
            counts["skipped"] += 1
        elif job.status in ("failed", "cancelled"):
            job = service.resume(job.id)
            counts["resumed"] += 1
        else:
            counts["pending"] += 1  # queued, or left running by a killed batch (requeued on start)
        jobs.append(job)
    return jobs, counts


def run_batch(
    items: list[BatchItem],
    config: ServiceConfig,
    on_progress: Callable[[list[Job]], None] | None = None,
    poll_s: float = 1.0,
) -> list[Job]:
    """Run every item to its end (or skip it) and write the summary; returns the final jobs."""
    config = dataclasses.replace(config, max_queued=max(config.max_queued, len(items) + 1))
    service = JobService(config)
    service.start()
    try:
        jobs, counts = enqueue(service, items)
        logger.info("batch of %d: %s", len(items), ", ".join(f"{v} {k}" for k, v in counts.items() if v))
        ids = [j.id for j in jobs]
        while True:
            jobs = [service.store.get(i) for i in ids]
            if on_progress is not None:
                on_progress(jobs)
            if all(j.status in TERMINAL for j in jobs):
                break
            time.sleep(poll_s)
    finally:
        service.stop()
    write_summary(config.data_dir, jobs)
    return jobs


def summary_rows(data_dir: Path, jobs: list[Job]) -> list[dict[str, Any]]:
    """One row per job: status, timings, files (relative to ``data_dir``) and metrics."""
    rows = []
    for job in jobs:
        run_dir = results.job_run_dir(job, JobPaths(data_dir, job.id))
        files = results.files(run_dir)
        metrics = results.metrics(run_dir)

        def rel(sub: str | None, run_dir: Path | None = run_dir) -> str | None:
            return str((run_dir / sub).relative_to(data_dir)) if sub and run_dir else None

        duration = (job.finished_at - job.started_at) if job.finished_at and job.started_at else None
        rows.append(
            {
                "key": job.batch_key,
                "kind": job.kind,
                "title": job.title,
                "status": job.status,
                "job_id": job.id,
                "attempts": job.attempts,
                "duration_s": round(duration, 1) if duration is not None else None,
                "run_dir": str(run_dir.relative_to(data_dir)) if run_dir else None,
                "asset": rel(files["asset"]),
                "preview": rel(files["asset_preview"] or files["preview"]),
                "turntable": rel(files["turntable"]),
                **{k: metrics.get(k) for k in ("fidelity_psnr", "held_out_psnr", "num_faces", "asset_bytes")},
                "error": job.error,
            }
        )
    return rows


def write_summary(data_dir: Path, jobs: list[Job]) -> list[dict[str, Any]]:
    """Write ``summary.json``, ``summary.csv`` and ``index.html`` into ``data_dir``."""
    rows = summary_rows(data_dir, jobs)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "failed", "cancelled")}
    write_text_atomic(
        data_dir / "summary.json", json.dumps({"counts": counts, "jobs": rows}, indent=2) + "\n"
    )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(data_dir / "summary.csv", buf.getvalue())
    write_text_atomic(data_dir / "index.html", gallery_html(rows, counts))
    return rows


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def gallery_html(rows: list[dict[str, Any]], counts: dict[str, int]) -> str:
    """A self-contained HTML page of the batch's results (relative links, no scripts)."""
    e = html.escape
    cards = []
    for r in rows:
        img = f'<img src="{e(r["preview"])}" alt="preview of {e(r["title"])}">' if r["preview"] else ""
        links = []
        if r["asset"]:
            links.append(f'<a href="{e(r["asset"])}">.glb</a>')
        if r["turntable"]:
            links.append(f'<a href="{e(r["turntable"])}">turntable</a>')
        if r["run_dir"]:
            links.append(f'<a href="{e(r["run_dir"])}/">run folder</a>')
        facts = [
            ("status", r["status"]),
            ("time", _fmt(r["duration_s"], " s")),
            ("fidelity", _fmt(r["fidelity_psnr"], " dB")),
            ("held-out PSNR", _fmt(r["held_out_psnr"], " dB")),
            ("faces", _fmt(r["num_faces"])),
        ]
        dl = "".join(f"<dt>{k}</dt><dd>{e(str(v))}</dd>" for k, v in facts if v)
        err = f'<p class="error">{e(r["error"])}</p>' if r["error"] else ""
        cards.append(
            f'<li class="{e(r["status"])}">{img}<h2>{e(r["title"])}</h2><dl>{dl}</dl>{err}<p>{" · ".join(links)}</p></li>'
        )
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>t23d batch</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{{font:15px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d232b}}
ul{{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:1rem}}
li{{border:1px solid #d5dbe1;border-radius:6px;padding:.5rem}} li.failed{{border-color:#b3261e}}
img{{width:100%;height:12rem;object-fit:contain;background:#eef1f4}} h2{{font-size:1rem;overflow-wrap:anywhere}}
dl{{display:grid;grid-template-columns:auto 1fr;gap:0 .5rem;font-size:.85rem}} dt{{color:#5b6673}} dd{{margin:0}}
.error{{color:#b3261e;font-size:.85rem;overflow-wrap:anywhere}}
</style></head><body>
<h1>t23d batch</h1><p>{len(rows)} jobs: {e(summary)}. Data: <a href="summary.json">summary.json</a>, <a href="summary.csv">summary.csv</a>.</p>
<ul>{"".join(cards)}</ul>
</body></html>
"""
