"""Atomic writes: permissions follow the umask, temporary names are recognisable, and the temporary
files of killed writes are removed (by pid liveness, or all of them under the run lock)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from t23d.common.atomic import remove_stale_temp_files, write_bytes_atomic, write_json_atomic


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_bytes_atomic(tmp_path / "asset.glb", b"glTF")
        write_json_atomic(tmp_path / "export.json", {"a": 1})
    finally:
        os.umask(old)
    for name in ("asset.glb", "export.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_checkpoints_follow_the_umask(tmp_path):
    import torch

    from t23d.run.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path, 1, {"w": torch.zeros(4)}, {})
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["step_0000001.safetensors", "step_0000001.json", "latest.json"], 0o644)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_files_are_removed(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    dead = tmp_path / "checkpoints" / f".step_0000100.safetensors.t23d-tmp-{dead_pid()}-0a1b2c3d"
    alive = tmp_path / f".run.json.t23d-tmp-{os.getppid()}-0a1b2c3d"
    legacy_mkstemp = tmp_path / "checkpoints" / ".step_0000100.safetensors.ab12_xyz.tmp.safetensors"
    legacy_safetensors = tmp_path / "checkpoints" / ".tmpAb3dEf"
    user_file = tmp_path / ".notes.txt"
    for p in (dead, alive, legacy_mkstemp, legacy_safetensors, user_file):
        p.write_bytes(b"x" * 100)

    # without the run lock: only files whose writer is gone
    assert remove_stale_temp_files(tmp_path, recursive=True) == [dead]
    assert alive.exists() and legacy_mkstemp.exists() and legacy_safetensors.exists()
    # under the run lock nobody else writes here: every t23d temporary file goes, nothing else
    removed = remove_stale_temp_files(tmp_path, recursive=True, owner_locked=True)
    assert sorted(removed) == sorted([alive, legacy_mkstemp, legacy_safetensors])
    assert user_file.exists()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from t23d.common.atomic import write_with_atomic

    write_bytes_atomic(tmp_path / "a.bin", b"old")

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_with_atomic(tmp_path / "a.bin", fail)
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"old"
