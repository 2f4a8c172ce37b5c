"""``progress.json``: written atomically at most once per interval, rate and ETA from this process's steps."""

from __future__ import annotations

import json
import time

from t23d.run.progress import PROGRESS_JSON, ProgressFile


def test_progress_file_rate_eta_and_throttling(tmp_path):
    p = ProgressFile(tmp_path, total_steps=100, start_step=40, interval_s=0.2)  # a resumed run
    p.update(41, {"total": 0.5})
    first = json.loads((tmp_path / PROGRESS_JSON).read_text())
    assert first["phase"] == "training" and first["step"] == 41 and first["total_steps"] == 100
    assert first["loss"] == 0.5 and first["losses"] == {"total": 0.5}
    p.update(42, {"total": 0.4})  # within the interval: not written
    assert json.loads((tmp_path / PROGRESS_JSON).read_text())["step"] == 41
    time.sleep(0.25)
    p.update(50, {"total": 0.3})
    rec = json.loads((tmp_path / PROGRESS_JSON).read_text())
    # 10 steps done by this process: the 40 steps before the resume do not count towards the rate
    assert rec["step"] == 50 and abs(rec["steps_per_s"] - 10 / rec["elapsed_s"]) < 1e-6
    assert abs(rec["eta_s"] - 50 / rec["steps_per_s"]) < 1e-6 and abs(rec["time"] - time.time()) < 5
    p.write("finishing")
    done = json.loads((tmp_path / PROGRESS_JSON).read_text())
    assert done["phase"] == "finishing" and done["eta_s"] is None
    assert [f.name for f in tmp_path.iterdir()] == [PROGRESS_JSON]  # no temporary files left


def test_live_previews_and_progress_leave_training_bit_exact(tiny_sd_dir, tmp_path):
    """A run with a live preview after every step trains exactly like one without previews."""
    import dataclasses
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "optimise"))
    from gen_helpers import smoke_config

    from t23d.optimise.generate import load_generate_state, run_generate

    def run(live_every_s: float, out: Path) -> Path:
        cfg = smoke_config(tiny_sd_dir, steps=3, export_at_end=False)
        cfg = dataclasses.replace(cfg, preview=dataclasses.replace(cfg.preview, live_every_s=live_every_s))
        return run_generate(cfg, out)

    with_previews, without = run(1e-6, tmp_path / "a"), run(0.0, tmp_path / "b")
    assert (with_previews / "previews" / "latest.png").stat().st_size > 0
    assert not (without / "previews" / "latest.png").exists()
    for run_dir in (with_previews, without):
        rec = json.loads((run_dir / PROGRESS_JSON).read_text())
        assert rec["phase"] == "finishing" and rec["step"] == rec["total_steps"] == 3
    a = load_generate_state(with_previews, torch.device("cpu"))[1].field.state_dict()
    b = load_generate_state(without, torch.device("cpu"))[1].field.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_progress_write_failure_does_not_stop_training(tmp_path, caplog):
    p = ProgressFile(tmp_path / "missing" / "run", total_steps=10, start_step=0, interval_s=0.0)
    (tmp_path / "missing").write_text("a file where the run folder should be")
    p.update(1, {"total": 1.0})  # cannot write: logged once, no exception
    p.update(2, {"total": 1.0})
    assert sum("could not write" in r.message for r in caplog.records) == 1
