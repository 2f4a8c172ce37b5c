"""``t23d serve``: the web platform (page, REST API, job queue, local or Ray workers)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    from t23d.common.errors import T23dError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise T23dError(
            f't23d serve needs the web extra ({e.name} is missing): pip install "t23d[serve]"'
        ) from e
    from t23d.serve.server import ServeConfig, serve
    from t23d.serve.uploads import UploadLimits

    cfg = ServeConfig(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data),
        workers=args.workers,
        ray=args.ray,
        token=args.token or os.environ.get("T23D_TOKEN") or None,
        priors=tuple(args.prior),
        config_files=tuple(args.config),
        device=args.device,
        max_queued=args.max_queued,
        limits=UploadLimits(max_bytes=int(args.max_upload_mb * (1 << 20)), max_files=args.max_files),
    )
    serve(cfg)
    return 0
