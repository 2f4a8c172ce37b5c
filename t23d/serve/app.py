"""The FastAPI application: the REST API (which the page itself uses), live progress by SSE, the page.

``create_app(service, config)`` builds it around a :class:`~t23d.jobs.service.JobService`; it creates
jobs and reads run directories, nothing more. OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from t23d.common.errors import ConfigError
from t23d.jobs import results as runs
from t23d.jobs.service import JobService
from t23d.jobs.spec import DATA_FORMATS, MAX_PROMPT_CHARS, PRESETS, GenerateSpec, ReconstructSpec
from t23d.jobs.store import JobConflict, JobNotFound, QueueFull
from t23d.serve.auth import AccessMiddleware
from t23d.serve.uploads import UploadError, UploadLimits, save_photos

STATIC = Path(__file__).parent / "static"
MAX_JSON_BYTES = 64 * 1024


@dataclass
class AppConfig:
    """Options of the web application (the server adds host and port)."""

    token: str | None = None
    """Access token required by every request (None: no token; only allowed on loopback)."""
    loopback_only_hosts: bool = True
    """Refuse requests whose Host header is not a loopback name (set when bound to loopback)."""
    limits: UploadLimits = field(default_factory=UploadLimits)
    """Upload limits."""
    event_interval_s: float = 0.5
    """Seconds between checks for changes in the SSE streams."""


class GenerateRequest(BaseModel):
    """A text-to-3D job (``POST /api/jobs`` with a JSON body)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["generate"] = "generate"
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="what to generate")
    negative_prompt: str | None = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="what to avoid"
    )
    preset: Literal["fast", "default", "quality"] = "default"
    steps: int | None = Field(default=None, ge=1, description="optimisation steps (default: the preset's)")
    seed: int | None = Field(default=None, ge=0, lt=2**32, description="random seed")
    prior: str | None = Field(
        default=None, description="one of GET /api/config's priors (default: the first)"
    )


class JobCreated(BaseModel):
    """The id of a new job."""

    id: str


_MULTIPART_DOC = {
    "requestBody": {
        "content": {
            "application/json": {"schema": GenerateRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["kind", "files"],
                    "properties": {
                        "kind": {"type": "string", "enum": ["reconstruct"]},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "data_format": {"type": "string", "enum": list(DATA_FORMATS)},
                        "preset": {"type": "string", "enum": list(PRESETS)},
                        "steps": {"type": "integer"},
                        "seed": {"type": "integer"},
                        "downscale": {"type": "integer"},
                        "faces": {"type": "integer"},
                        "texture_size": {"type": "integer"},
                    },
                }
            },
        },
        "required": True,
    }
}


def _int_field(form: Any, name: str) -> int | None:
    value = form.get(name)
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {str(value)!r}") from None


def create_app(service: JobService, config: AppConfig | None = None) -> FastAPI:
    """The web application around ``service`` (which the caller starts and stops)."""
    config = config or AppConfig()
    app = FastAPI(
        title="t23d",
        description="Text prompt or photos -> textured glTF assets. Jobs, live progress, gallery.",
        version=_version(),
    )
    limits = config.limits

    @app.exception_handler(JobNotFound)
    async def _not_found(request: Request, exc: JobNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(JobConflict)
    async def _conflict(request: Request, exc: JobConflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(QueueFull)
    async def _full(request: Request, exc: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": "30"})

    @app.exception_handler(UploadError)
    async def _upload(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def view(job_id: str) -> dict[str, Any]:
        job = service.store.get(job_id)
        return runs.job_view(job, service.paths(job.id))

    def run_dir_of(job_id: str) -> Path:
        job = service.store.get(job_id)
        run_dir = runs.job_run_dir(job, service.paths(job_id))
        if run_dir is None:
            raise HTTPException(404, f"job {job_id} has no run directory yet (status {job.status})")
        return run_dir

    # ------------------------------------------------------------------ page
    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------------ service
    @app.get("/api/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and queue counts."""
        return {
            "status": "ok",
            "version": _version(),
            "backend": service.backend.description,
            "counts": service.store.counts(),
        }

    @app.get("/api/config", tags=["service"])
    def service_config() -> dict[str, Any]:
        """What a job may ask for: priors, presets, capture formats, upload limits."""
        priors = service.config.settings.priors
        return {
            "priors": [{"id": p, "name": Path(p).name or p} for p in priors],
            "presets": list(PRESETS),
            "data_formats": list(DATA_FORMATS),
            "max_queued": service.config.max_queued,
            "limits": {
                "max_bytes": limits.max_bytes,
                "max_files": limits.max_files,
                "max_pixels": limits.max_pixels,
            },
        }

    # ------------------------------------------------------------------ jobs
    @app.post(
        "/api/jobs", status_code=201, response_model=JobCreated, tags=["jobs"], openapi_extra=_MULTIPART_DOC
    )
    async def create_job(request: Request) -> JobCreated:
        """Queue a job: JSON ``{"kind": "generate", "prompt": ...}``, or multipart photos/zip with
        ``kind=reconstruct``. 400 bad options, 413 too large, 422 invalid JSON fields, 429 queue full."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            body = await request.body()
            if len(body) > MAX_JSON_BYTES:
                raise UploadError(f"JSON body over {MAX_JSON_BYTES} bytes", 413)
            try:
                data = json.loads(body or b"null")
            except ValueError as e:
                raise HTTPException(400, f"the body is not valid JSON ({e})") from e
            if isinstance(data, dict) and data.get("kind") == "reconstruct":
                raise HTTPException(
                    400,
                    "reconstruct jobs take photos: send multipart/form-data with kind=reconstruct and files",
                )
            try:
                req = GenerateRequest.model_validate(data)
            except ValidationError as e:
                errors = [{k: err[k] for k in ("loc", "msg", "type")} for err in e.errors()]
                return JSONResponse({"detail": errors}, status_code=422)  # type: ignore[return-value]
            spec = GenerateSpec(**req.model_dump(exclude={"kind"}))
            job = await run_in_threadpool(service.submit, spec)
            return JobCreated(id=job.id)
        if ctype != "multipart/form-data":
            raise HTTPException(415, "send application/json (generate) or multipart/form-data (reconstruct)")
        length = request.headers.get("content-length")
        if length is None:
            raise HTTPException(411, "uploads need a Content-Length header")
        if int(length) > limits.max_bytes + (1 << 20):
            raise UploadError(f"upload of {length} bytes is over the limit of {limits.max_bytes}", 413)
        form = await request.form(max_files=limits.max_files + 1, max_fields=50)
        try:
            return await run_in_threadpool(_submit_form, service, form, limits)
        finally:
            await form.close()

    @app.get("/api/jobs", tags=["jobs"])
    def list_jobs(status: str | None = None, limit: int = 200) -> JSONResponse:
        """Jobs, newest first (optionally of one status), and the count of each status."""
        if status is not None and status not in ("queued", "running", "completed", "failed", "cancelled"):
            raise HTTPException(
                400, f"status must be queued, running, completed, failed or cancelled, got {status!r}"
            )
        limit = max(1, min(limit, 1000))
        jobs = [runs.job_view(j, service.paths(j.id)) for j in service.store.list(status=status, limit=limit)]
        return JSONResponse({"jobs": jobs, "counts": service.store.counts()})

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: str) -> JSONResponse:
        """One job: status, step/steps, loss, ETA, files, metrics."""
        return JSONResponse(view(job_id))  # already JSON-able: skip FastAPI's re-encoding

    @app.post("/api/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel_job(job_id: str) -> dict[str, Any]:
        """Cancel a queued job, or ask a running one to stop (it saves a checkpoint). 409 if finished."""
        service.cancel(job_id)
        return view(job_id)

    @app.post("/api/jobs/{job_id}/resume", tags=["jobs"])
    def resume_job(job_id: str) -> dict[str, Any]:
        """Queue a failed or cancelled job again; it continues from its last checkpoint."""
        service.resume(job_id)
        return view(job_id)

    @app.post("/api/jobs/{job_id}/retry", status_code=201, response_model=JobCreated, tags=["jobs"])
    def retry_job(job_id: str) -> JobCreated:
        """A new job with the same options, from scratch."""
        return JobCreated(id=service.retry(job_id).id)

    @app.delete("/api/jobs/{job_id}", tags=["jobs"])
    def delete_job(job_id: str) -> dict[str, str]:
        """Delete a finished job and its files."""
        service.delete(job_id)
        return {"deleted": job_id}

    @app.get("/api/jobs/{job_id}/asset", tags=["files"], response_class=FileResponse)
    def get_asset(job_id: str) -> FileResponse:
        """The job's asset (.glb)."""
        asset = runs.asset_path(run_dir_of(job_id))
        if asset is None:
            raise HTTPException(404, f"job {job_id} has no exported asset")
        return FileResponse(asset, media_type="model/gltf-binary", filename=asset.name)

    @app.get("/api/jobs/{job_id}/gltf.zip", tags=["files"])
    def get_gltf_zip(job_id: str) -> Response:
        """The asset as separate files (.gltf + .bin) in a zip."""
        from t23d.export.glb_split import split_glb

        asset = runs.asset_path(run_dir_of(job_id))
        if asset is None:
            raise HTTPException(404, f"job {job_id} has no exported asset")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in split_glb(asset.read_bytes(), asset.stem).items():
                zf.writestr(f"{asset.stem}/{name}", data)
        headers = {"Content-Disposition": f'attachment; filename="{asset.stem}_gltf.zip"'}
        return Response(buf.getvalue(), media_type="application/zip", headers=headers)

    @app.get("/api/jobs/{job_id}/run.zip", tags=["files"])
    def get_run_zip(job_id: str) -> FileResponse:
        """The whole run directory (config, log, checkpoints, previews, export) as a zip."""
        run_dir = run_dir_of(job_id)
        tmp_dir = Path(tempfile.mkdtemp(prefix="run-zip-", dir=service.config.data_dir))
        try:
            archive = Path(
                shutil.make_archive(str(tmp_dir / run_dir.name), "zip", run_dir.parent, run_dir.name)
            )
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        return FileResponse(
            archive,
            media_type="application/zip",
            filename=f"{run_dir.name}.zip",
            background=BackgroundTask(shutil.rmtree, tmp_dir, ignore_errors=True),
        )

    @app.get("/api/jobs/{job_id}/files/{rel:path}", tags=["files"])
    def get_file(job_id: str, rel: str) -> FileResponse:
        """A file of the run directory (previews, export, log), by its path relative to the run."""
        path = runs.safe_file(run_dir_of(job_id), rel)
        if path is None:
            raise HTTPException(404, f"no file {rel!r} in job {job_id}'s run directory")
        return FileResponse(path)

    @app.get("/api/jobs/{job_id}/log", tags=["files"], response_class=PlainTextResponse)
    def get_log(job_id: str, tail: int = 200) -> str:
        """The last lines of the job process's output."""
        service.store.get(job_id)
        log = service.paths(job_id).log
        if not log.is_file():
            return ""
        lines = log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-max(1, min(tail, 5000)) :]) + "\n"

    # ------------------------------------------------------------------ live progress
    @app.get("/api/events", tags=["jobs"])
    async def events(request: Request, job: str | None = None) -> StreamingResponse:
        """Server-sent events: a ``job`` event (the job's JSON, as ``GET /api/jobs/{id}``) whenever a job
        changes. With ``?job=ID`` only that job, and the stream ends when the job is finished."""
        if job is not None:
            await run_in_threadpool(service.store.get, job)

        def changed_views(seen: dict[str, float]) -> list[dict[str, Any]]:
            # a job's files change only while it runs; others are re-read when their row changes
            jobs = [service.store.get(job)] if job is not None else service.store.list(limit=200)
            out = []
            for j in jobs:
                if j.status == "running" or seen.get(j.id) != j.updated_at:
                    seen[j.id] = j.updated_at
                    out.append(runs.job_view(j, service.paths(j.id)))
            return out

        async def stream():
            last: dict[str, str] = {}
            seen: dict[str, float] = {}
            idle = 0.0
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                for v in await run_in_threadpool(changed_views, seen):
                    text = json.dumps(v, sort_keys=True)
                    if last.get(v["id"]) != text:
                        last[v["id"]] = text
                        idle = 0.0
                        yield f"event: job\ndata: {text}\n\n"
                        if job is not None and v["status"] in ("completed", "failed", "cancelled"):
                            yield "event: end\ndata: {}\n\n"
                            return
                idle += config.event_interval_s
                if idle >= 15:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(config.event_interval_s)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    app.add_middleware(AccessMiddleware, token=config.token, loopback_only_hosts=config.loopback_only_hosts)
    return app


def _submit_form(service: JobService, form: Any, limits: UploadLimits) -> JobCreated:
    kind = form.get("kind", "reconstruct")
    if kind != "reconstruct":
        raise ConfigError(
            f"multipart uploads are for kind=reconstruct, got kind={kind!r} (generate takes JSON)"
        )
    files = [(f.filename or "file", f.file) for f in form.getlist("files") if hasattr(f, "file")]
    job_id = service.new_job_id()
    paths = service.paths(job_id)
    spec_args = {
        "data_format": form.get("data_format") or "auto",
        "preset": form.get("preset") or "default",
        **{k: _int_field(form, k) for k in ("steps", "seed", "downscale", "faces", "texture_size")},
    }
    # check the options before the (possibly large) files are written
    from t23d.jobs.spec import validate_spec

    validate_spec(ReconstructSpec(input="-", **spec_args))
    try:
        capture = save_photos(files, paths.inputs, limits)
        return JobCreated(
            id=service.submit(ReconstructSpec(input=str(capture), **spec_args), job_id=job_id).id
        )
    except BaseException:
        shutil.rmtree(paths.job_dir, ignore_errors=True)
        raise


def _version() -> str:
    from t23d import __version__

    return __version__
