"""Checkpoints: fallback to the previous one when the latest is damaged or lost, clear errors when none
loads or the disk is full, and only temporary files whose names t23d controls."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest
import torch

from t23d.common.errors import T23dError
from t23d.run.checkpoint import CheckpointWriteError, load_checkpoint, save_checkpoint


def three_checkpoints(ckpt: Path) -> None:
    for step in (2, 4, 6):
        save_checkpoint(ckpt, step, {"w": torch.full((64,), float(step))}, {"lr": 0.1}, keep_last=3)


def test_latest_loads(tmp_path):
    three_checkpoints(tmp_path)
    tensors, state = load_checkpoint(tmp_path)
    assert state["step"] == 6 and torch.equal(tensors["w"], torch.full((64,), 6.0))


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
def test_a_damaged_latest_falls_back_to_the_previous_with_a_warning(tmp_path, caplog, damage):
    three_checkpoints(tmp_path)
    latest = tmp_path / "step_0000006.safetensors"
    if damage == "truncate":
        latest.write_bytes(latest.read_bytes()[:100])
    elif damage == "delete":
        latest.unlink()
    else:
        latest.write_bytes(b"\x00" * 300)
    with caplog.at_level(logging.WARNING, logger="t23d"):
        tensors, state = load_checkpoint(tmp_path)
    assert state["step"] == 4 and torch.equal(tensors["w"], torch.full((64,), 4.0))
    assert "step 6" in caplog.text and "using the previous checkpoint, step 4" in caplog.text


def test_a_lost_latest_json_uses_the_newest_step_file(tmp_path, caplog):
    three_checkpoints(tmp_path)
    (tmp_path / "latest.json").unlink()
    with caplog.at_level(logging.WARNING, logger="t23d"):
        _, state = load_checkpoint(tmp_path)
    assert state["step"] == 6 and "no latest.json" in caplog.text


def test_nothing_readable_names_every_file_tried(tmp_path):
    three_checkpoints(tmp_path)
    for p in tmp_path.glob("*.safetensors"):
        p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(T23dError, match="no readable checkpoint") as exc:
        load_checkpoint(tmp_path)
    for step in (2, 4, 6):
        assert f"step_000000{step}.safetensors" in str(exc.value)


def test_no_checkpoint_at_all(tmp_path):
    with pytest.raises(T23dError, match="no checkpoint in"):
        load_checkpoint(tmp_path)


def test_disk_full_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import t23d.run.checkpoint as ckpt_mod

    save_checkpoint(tmp_path, 2, {"w": torch.zeros(8)}, {})
    real = ckpt_mod.write_bytes_atomic

    def full(path, data):
        def write_half(tmp):
            tmp.write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        from t23d.common.atomic import write_with_atomic

        write_with_atomic(path, write_half)

    monkeypatch.setattr(ckpt_mod, "write_bytes_atomic", full)
    with pytest.raises(
        CheckpointWriteError, match="No space left on device; the previous checkpoint \\(step 2\\)"
    ):
        save_checkpoint(tmp_path, 4, {"w": torch.ones(8)}, {})
    monkeypatch.setattr(ckpt_mod, "write_bytes_atomic", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "latest.json",
        "step_0000002.json",
        "step_0000002.safetensors",
    ]
    assert load_checkpoint(tmp_path)[1]["step"] == 2


def test_the_only_temporary_file_is_named_by_t23d(tmp_path, monkeypatch):
    """safetensors' ``save_file`` writes its own hidden ``.tmpXXXXXX`` (mode 0600) that a killed process
    leaves behind; the checkpoint is serialised in memory and written through t23d's atomic writer."""
    import os

    import t23d.common.atomic as atomic

    seen: list[str] = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        seen.extend(sorted(os.listdir(Path(dst).parent)))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", spy)
    save_checkpoint(tmp_path, 2, {"w": torch.zeros(1 << 16)}, {})
    hidden = {n for n in seen if n.startswith(".")}
    assert hidden and all(".t23d-tmp-" in n for n in hidden), hidden
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 2
