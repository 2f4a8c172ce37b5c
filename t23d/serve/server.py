"""Running the service: checks, the job service's lifecycle around uvicorn."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from t23d.common.errors import ConfigError
from t23d.jobs.local import WorkerConfig
from t23d.jobs.service import JobService, ServiceConfig
from t23d.jobs.spec import CommandSettings, resolve_config_files, resolve_priors
from t23d.serve.app import AppConfig, create_app
from t23d.serve.auth import is_loopback_host
from t23d.serve.uploads import UploadLimits

logger = logging.getLogger(__name__)
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._~+-]{8,256}$")


@dataclass
class ServeConfig:
    """Options of ``t23d serve``."""

    host: str = "127.0.0.1"
    """Address to listen on. Anything but loopback needs a token."""
    port: int = 8023
    """TCP port."""
    data_dir: Path = Path("t23d-data")
    """Job database, uploads and run directories."""
    workers: int = 1
    """Local worker processes (jobs at once) when not using Ray."""
    ray: str | None = None
    """None: local workers; "local": a Ray instance on this machine; else a Ray cluster address."""
    token: str | None = None
    """Access token for the page and the API (8+ characters of ``A-Za-z0-9._~+-``)."""
    priors: tuple[str, ...] = ()
    """Priors web users may pick (hub ids or local folders); the first is the default."""
    config_files: tuple[str, ...] = ()
    """YAML overrides applied to every job (e.g. configs/cpu-smoke.yaml)."""
    device: str = "auto"
    """Device of every job: auto, cpu or cuda."""
    max_queued: int = 100
    """Queued jobs allowed at once (more: HTTP 429)."""
    limits: UploadLimits = field(default_factory=UploadLimits)
    """Upload limits."""


def check_serve_config(cfg: ServeConfig) -> ServeConfig:
    """Validate and normalise (absolute paths); raises :class:`ConfigError` naming the option."""
    loopback = is_loopback_host(cfg.host)
    if not loopback and not cfg.token:
        raise ConfigError(
            f"--host {cfg.host} is not a loopback address; a service reachable from the network needs "
            "--token TOKEN (or the T23D_TOKEN environment variable)"
        )
    if cfg.token is not None and not TOKEN_PATTERN.match(cfg.token):
        raise ConfigError("--token must be 8 to 256 characters of A-Z a-z 0-9 . _ ~ + -")
    if not 0 < cfg.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {cfg.port}")
    if cfg.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {cfg.workers}")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {cfg.device!r} is not one of: auto, cpu, cuda")
    if cfg.max_queued < 1:
        raise ConfigError(f"--max-queued must be at least 1, got {cfg.max_queued}")
    configs = resolve_config_files(cfg.config_files)
    priors = resolve_priors(cfg.priors)
    import dataclasses

    return dataclasses.replace(
        cfg, data_dir=Path(cfg.data_dir).resolve(), config_files=configs, priors=priors
    )


def build_service(cfg: ServeConfig) -> JobService:
    """The job service for a (checked) serve config."""
    settings = CommandSettings(priors=cfg.priors, config_files=cfg.config_files, device=cfg.device)  # type: ignore[arg-type]
    return JobService(
        ServiceConfig(
            data_dir=cfg.data_dir,
            settings=settings,
            workers=WorkerConfig(num_workers=cfg.workers),
            ray=cfg.ray,
            max_queued=cfg.max_queued,
        )
    )


def serve(cfg: ServeConfig) -> None:
    """Start the job service and the web server; returns after Ctrl-C / SIGTERM, when running jobs
    have saved a checkpoint and are queued again."""
    import uvicorn

    cfg = check_serve_config(cfg)
    service = build_service(cfg)
    service.start()
    try:
        app = create_app(
            service,
            AppConfig(token=cfg.token, loopback_only_hosts=is_loopback_host(cfg.host), limits=cfg.limits),
        )
        shown = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        logger.info(
            "t23d serve: http://%s:%d/%s  (data %s, %s)",
            shown,
            cfg.port,
            "?token=..." if cfg.token else "",
            cfg.data_dir,
            service.backend.description,
        )
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        logger.info("stopping: running jobs save a checkpoint and go back to the queue")
        service.stop()
