"""Uploaded captures: photos (several files) or one .zip (photos, or a nerfstudio/Blender/COLMAP capture).

Everything is checked before a job is queued: counts and sizes (also the unpacked size of a zip, so
a zip bomb is refused), names (sanitised; absolute paths, ``..`` and links refused: no zip-slip),
and every image is decoded in full with a pixel limit. A refused upload leaves nothing behind.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from t23d.common.errors import T23dError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
CAPTURE_EXTS = IMAGE_EXTS + (".json", ".txt", ".bin", ".ply", ".yaml", ".yml")
"""Files kept from a zip: images and the camera files of nerfstudio, Blender and COLMAP captures."""
_CHUNK = 1 << 20


class UploadError(T23dError):
    """An upload was refused; ``status`` is the HTTP status that says why (400, 413)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class UploadLimits:
    """Limits on one upload."""

    max_bytes: int = 1 << 30
    """Bytes of one request (files as sent); also bounds a zip's unpacked size (x4)."""
    max_files: int = 2000
    """Files in one upload (or in one zip)."""
    max_pixels: int = 64_000_000
    """Pixels of one image (width x height)."""


def sanitise_name(name: str) -> str:
    """A safe file name: letters, digits, ``._-``; no leading dot; at most 120 characters."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip("._")[:120]
    return base or "file"


def _safe_relpath(member: str) -> PurePosixPath:
    """A zip member's path, sanitised, or raise for an absolute path or a ``..`` component."""
    raw = member.replace("\\", "/")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise UploadError(f"zip member {member!r} has an absolute path; refused")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UploadError(f"zip member {member!r} points outside the archive ('..'); refused")
    return PurePosixPath(*[sanitise_name(p) for p in parts]) if parts else PurePosixPath()


def check_image(path: Path, limits: UploadLimits, label: str) -> None:
    """Decode ``path`` in full; raise naming ``label`` if it is not a readable image within the limits."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > limits.max_pixels:
                raise UploadError(f"{label}: {w}x{h} pixels is over the limit of {limits.max_pixels}", 413)
            img.load()
    except UploadError:
        raise
    except Exception as e:  # PIL raises many types for bad data (incl. DecompressionBombError)
        raise UploadError(f"{label} is not a readable image ({type(e).__name__}: {e})") from e


def _copy_limited(src: BinaryIO, dst: Path, budget: list[int], label: str) -> None:
    with open(dst, "wb") as out:
        while chunk := src.read(_CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise UploadError(f"upload too large at {label}: the limit is {budget[1]} bytes", 413)
            out.write(chunk)


def save_photos(files: list[tuple[str, BinaryIO]], dest: Path, limits: UploadLimits) -> Path:
    """Save uploaded photos into ``dest`` (created); returns the folder to reconstruct from.

    ``files`` are ``(client file name, stream)``. A single ``.zip`` is unpacked instead (see
    :func:`extract_zip`). On any error ``dest`` is removed.
    """
    if not files:
        raise UploadError("no files uploaded: send photos (field 'files') or one .zip")
    if len(files) > limits.max_files:
        raise UploadError(f"{len(files)} files uploaded; the limit is {limits.max_files}", 413)
    dest.mkdir(parents=True, exist_ok=False)
    try:
        budget = [limits.max_bytes, limits.max_bytes]
        if len(files) == 1 and files[0][0].lower().endswith(".zip"):
            archive = dest.parent / ".upload.zip"
            _copy_limited(files[0][1], archive, budget, files[0][0])
            try:
                return extract_zip(archive, dest, limits)
            finally:
                archive.unlink(missing_ok=True)
        seen: set[str] = set()
        for name, stream in files:
            safe = sanitise_name(PurePosixPath(name.replace("\\", "/")).name)
            if Path(safe).suffix.lower() not in IMAGE_EXTS:
                raise UploadError(
                    f"{name!r} is not a photo ({', '.join(IMAGE_EXTS)}); send photos, or one .zip for a capture with camera files"
                )
            if safe in seen:
                raise UploadError(f"two uploaded files are both named {safe!r}")
            seen.add(safe)
            _copy_limited(stream, dest / safe, budget, name)
            check_image(dest / safe, limits, repr(name))
        return dest
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def extract_zip(archive: Path, dest: Path, limits: UploadLimits) -> Path:
    """Unpack a capture zip safely into ``dest``; returns the capture folder (the zip's single
    top-level folder, if it has one). Files other than images and camera files are skipped."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise UploadError(f"the uploaded .zip is not a valid zip file ({e})") from e
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > limits.max_files:
            raise UploadError(f"the zip holds {len(members)} files; the limit is {limits.max_files}", 413)
        max_unpacked = 4 * limits.max_bytes
        if sum(m.file_size for m in members) > max_unpacked:
            raise UploadError(f"the zip unpacks to more than {max_unpacked} bytes; refused", 413)
        kept: dict[PurePosixPath, zipfile.ZipInfo] = {}
        for m in members:
            mode = (m.external_attr >> 16) & 0o170000
            if mode == stat.S_IFLNK:
                raise UploadError(f"zip member {m.filename!r} is a symbolic link; refused")
            rel = _safe_relpath(m.filename)
            if not rel.parts or rel.parts[0] == "MACOSX" or rel.name.startswith("."):
                continue
            if rel.suffix.lower() not in CAPTURE_EXTS:
                continue  # README, scripts, ...: not part of a capture
            if rel in kept:
                raise UploadError(f"two zip members are both saved as {str(rel)!r}")
            kept[rel] = m
        if not any(r.suffix.lower() in IMAGE_EXTS for r in kept):
            raise UploadError("the zip holds no photos (" + ", ".join(IMAGE_EXTS) + ")")
        budget = [max_unpacked, max_unpacked]
        for rel, m in kept.items():
            target = dest.joinpath(*rel.parts)
            if not target.resolve().is_relative_to(dest.resolve()):  # belt and braces
                raise UploadError(f"zip member {m.filename!r} points outside the archive; refused")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src:
                _copy_limited(src, target, budget, m.filename)
            if rel.suffix.lower() in IMAGE_EXTS:
                check_image(target, limits, f"zip member {m.filename!r}")
    tops = {r.parts[0] for r in kept}
    if len(tops) == 1 and all(len(r.parts) > 1 for r in kept):
        return dest / next(iter(tops))
    return dest
