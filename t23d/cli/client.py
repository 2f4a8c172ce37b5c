"""``t23d submit`` and ``t23d jobs``: command-line clients of a running ``t23d serve`` (its REST API).

Standard library only (urllib), so a client machine needs nothing but t23d itself.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from t23d.common.errors import T23dError

TERMINAL = ("completed", "failed", "cancelled")


class ServiceClient:
    """Minimal REST client of ``t23d serve``."""

    def __init__(self, server: str, token: str | None = None, timeout_s: float = 60.0):
        if not server.startswith(("http://", "https://")):
            raise T23dError(f"--server must be an http(s) URL such as http://127.0.0.1:8023, got {server!r}")
        self.server = server.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: BinaryIO | None = None,
        headers: dict | None = None,
    ) -> Any:
        """Send a request; returns the decoded JSON, raises :class:`T23dError` with the server's reason."""
        hdrs = dict(headers or {})
        payload: Any = data
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.server + path, data=payload, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as res:
                text = res.read().decode()
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read().decode()).get("detail")
            except ValueError:
                detail = e.reason
            raise T23dError(f"{self.server} answered {e.code} to {method} {path}: {detail}") from None
        except urllib.error.URLError as e:
            raise T23dError(
                f"cannot reach {self.server} ({e.reason}); is 't23d serve' running there?"
            ) from None
        return json.loads(text) if text else None

    def upload(self, fields: dict[str, str], archive: Path) -> Any:
        """POST ``/api/jobs`` as multipart/form-data with one zip file."""
        boundary = uuid.uuid4().hex
        with tempfile.TemporaryFile() as body:
            for name, value in fields.items():
                body.write(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                )
            body.write(
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{archive.name}"\r\n'
                "Content-Type: application/zip\r\n\r\n".encode()
            )
            with open(archive, "rb") as f:
                while chunk := f.read(1 << 20):
                    body.write(chunk)
            body.write(f"\r\n--{boundary}--\r\n".encode())
            size = body.tell()
            body.seek(0)
            headers = {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(size),
            }
            return self.request("POST", "/api/jobs", data=body, headers=headers)


def zip_capture(folder: Path, dest: Path) -> Path:
    """Zip a capture folder (keeping its layout, under its own name) into ``dest``."""
    archive = dest / f"{folder.name or 'capture'}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not any(p.startswith(".") for p in path.relative_to(folder).parts):
                zf.write(path, Path(folder.name) / path.relative_to(folder))
    return archive


def _client(args: argparse.Namespace) -> ServiceClient:
    return ServiceClient(args.server, args.token or os.environ.get("T23D_TOKEN") or None)


def _progress_line(job: dict[str, Any]) -> str:
    step = f"{job.get('step', 0)}/{job['steps']}" if job.get("steps") else "-"
    eta = f" ETA {job['eta_s']:.0f}s" if job.get("eta_s") is not None and job["status"] == "running" else ""
    loss = f" loss {job['loss']:.4g}" if isinstance(job.get("loss"), (int, float)) else ""
    return f"{job['id']}  {job['status']:9s} {step:>11s}{loss}{eta}  {job['kind']:11s} {job['title']}"


def submit_main(args: argparse.Namespace) -> int:
    """``t23d submit``: queue a prompt, or upload a capture folder / .zip, and optionally wait."""
    client = _client(args)
    target = Path(args.input)
    common = {k: getattr(args, k) for k in ("preset", "steps", "seed") if getattr(args, k) is not None}
    if target.is_dir() or (target.is_file() and target.suffix.lower() == ".zip"):
        fields = {"kind": "reconstruct", **{k: str(v) for k, v in common.items()}}
        for key in ("data_format", "downscale"):
            if getattr(args, key) is not None:
                fields[key] = str(getattr(args, key))
        with tempfile.TemporaryDirectory() as tmp:
            archive = zip_capture(target, Path(tmp)) if target.is_dir() else target
            created = client.upload(fields, archive)
    else:
        body: dict[str, Any] = {"kind": "generate", "prompt": args.input, **common}
        if args.negative_prompt is not None:
            body["negative_prompt"] = args.negative_prompt
        if args.prior is not None:
            body["prior"] = args.prior
        created = client.request("POST", "/api/jobs", body)
    job_id = created["id"]
    print(job_id)
    if not args.wait:
        return 0
    last = ""
    while True:
        job = client.request("GET", f"/api/jobs/{job_id}")
        line = _progress_line(job)
        if line != last:
            print(line, file=sys.stderr, flush=True)
            last = line
        if job["status"] in TERMINAL:
            break
        time.sleep(2)
    if job["status"] == "completed":
        print(f"asset: {client.server}/api/jobs/{job_id}/asset")
        return 0
    print(f"job {job_id} {job['status']}: {job.get('error') or ''}", file=sys.stderr)
    return 1


def jobs_main(args: argparse.Namespace) -> int:
    """``t23d jobs``: list jobs, show one, or cancel/resume one."""
    client = _client(args)
    if args.cancel or args.resume:
        job_id, action = (args.cancel, "cancel") if args.cancel else (args.resume, "resume")
        job = client.request("POST", f"/api/jobs/{urllib.parse.quote(job_id)}/{action}")
        print(_progress_line(job))
        return 0
    if args.job_id:
        job = client.request("GET", f"/api/jobs/{urllib.parse.quote(args.job_id)}")
        print(json.dumps(job, indent=2) if args.json else _progress_line(job))
        if job.get("error") and not args.json:
            print(f"error: {job['error']}")
        return 0
    query = f"?status={urllib.parse.quote(args.status)}" if args.status else ""
    data = client.request("GET", f"/api/jobs{query}")
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    out = io.StringIO()
    for job in data["jobs"]:
        out.write(_progress_line(job) + "\n")
    counts = ", ".join(f"{v} {k}" for k, v in data["counts"].items() if v)
    out.write(f"({counts or 'no jobs'})\n")
    sys.stdout.write(out.getvalue())
    return 0
