"""Atomic file writes: write to a temporary file in the destination folder, fsync, then rename.

A crash or Ctrl-C during a write leaves either the old file or the new one, never a torn file.

Temporary files are named ``.<name>.t23d-tmp-<pid>-<random>`` (:data:`TEMP_MARKER`), so a write killed
by ``kill -9`` or a power cut leaves a file that :func:`remove_stale_temp_files` recognises and removes
on the next start (its process is gone). They are created with mode ``0o666`` minus the umask, as
``open()`` would, so the final files are as readable as any other file the user creates (``mkstemp``'s
``0o600`` would hide every asset from other users, web servers and containers running as another uid).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Part of the name of every temporary file t23d writes (``.<name>.t23d-tmp-<pid>-<hex>``).
TEMP_MARKER = ".t23d-tmp-"
_TEMP_RE = re.compile(r"^\..+\.t23d-tmp-(\d+)-[0-9a-f]+$")
# names t23d <= 0.1.0 left behind: tempfile.mkstemp's ".<name>.<8 random chars>.tmp<suffix>", and
# safetensors' own ".tmp<6 random chars>" (its save_file writes there, then renames; mode 0600)
_LEGACY_TEMP_RE = re.compile(r"^(\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?|\.tmp[A-Za-z0-9]{6})$")


def temp_path_for(path: Path) -> Path:
    """A new temporary name beside ``path`` that :func:`remove_stale_temp_files` recognises."""
    return path.parent / f".{path.name}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The caller writes the whole file to the yielded path (with any library). If the block raises,
    the temporary file is removed and ``path`` is untouched. The file is created empty first, with
    the permissions the umask allows (``0o666 & ~umask``), so a library that rewrites it keeps them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = temp_path_for(path)
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(
    folder: Path, *, recursive: bool = False, owner_locked: bool = False
) -> list[Path]:
    """Delete the temporary files that killed writes left in ``folder``; returns what was removed.

    A temporary file is stale when the process named in it is gone. With ``owner_locked`` (the caller
    holds the folder's run lock, so no other t23d process can be writing there) every t23d temporary
    file is stale, also the older ``mkstemp``-style names and those whose pid was reused.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    for p in candidates:
        if not p.is_file():
            continue
        m = _TEMP_RE.match(p.name)
        stale = False
        if m is not None:
            stale = owner_locked or not _pid_alive(int(m.group(1)))
        elif owner_locked and _LEGACY_TEMP_RE.match(p.name):
            stale = True
        if stale:
            with contextlib.suppress(OSError):
                size = p.stat().st_size
                p.unlink()
                removed.append(p)
                logger.info("removed %s (%d bytes) left by an interrupted write", p, size)
    return removed


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_with_atomic(path: str | os.PathLike[str], write_fn: Callable[[Path], None]) -> None:
    """Call ``write_fn(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        write_fn(tmp)
