"""End-to-end ``generate`` runs on a tiny random prior: run directory, resume, interrupt, NaN, errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from gen_helpers import smoke_config

from t23d.common.errors import T23dError
from t23d.optimise.generate import load_generate_state, run_generate
from t23d.run.state import NonFiniteLoss, TrainingInterrupted


def test_generate_writes_complete_run_directory(tiny_sd_dir, tmp_path):
    cfg = smoke_config(tiny_sd_dir)
    run_dir = run_generate(cfg, tmp_path / "out")
    assert run_dir.parent == tmp_path / "out" and run_dir.name.startswith("a_red_ball-")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["completed_steps"] == cfg.steps
    assert info["prompt"] == "a red ball" and info["seed"] == 0 and info["device"] == "cpu"
    assert info["implementation"] in ("cpp", "torch")
    assert info["prior"]["kind"]
    assert {"train_s", "preview_s", "export_s"} <= set(info["timings"])
    assert (run_dir / "config.yaml").is_file() and (run_dir / "log.txt").read_text()
    assert (run_dir / "checkpoints" / "latest.json").is_file()
    assert (run_dir / "previews" / "grid.png").stat().st_size > 0
    assert (run_dir / "previews" / "turntable.gif").stat().st_size > 0
    assert (run_dir / "export" / "a_red_ball.glb").is_file()
    assert (run_dir / "export" / "export.json").is_file()
    # a second run never reuses the first one's directory
    run_dir2 = run_generate(smoke_config(tiny_sd_dir, steps=1, export_at_end=False), tmp_path / "out")
    assert run_dir2 != run_dir


def _params(run_dir):
    _, state = load_generate_state(run_dir, torch.device("cpu"))
    return {k: v.clone() for k, v in state.field.state_dict().items()} | {
        f"bg.{k}": v.clone() for k, v in state.background.state_dict().items()
    }


def test_resume_continues_bit_exactly(tiny_sd_dir, tmp_path):
    steps = 6
    full = run_generate(smoke_config(tiny_sd_dir, steps=steps, export_at_end=False), tmp_path / "a")
    half = run_generate(smoke_config(tiny_sd_dir, steps=steps // 2, export_at_end=False), tmp_path / "b")
    resumed = run_generate(smoke_config(tiny_sd_dir, steps=steps, export_at_end=False), resume=half)
    assert resumed == half
    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert json.loads((half / "run.json").read_text())["completed_steps"] == steps
    assert f"resumed from step {steps // 2}" in (half / "log.txt").read_text()


def test_interrupt_saves_checkpoint_and_says_how_to_resume(tiny_sd_dir, tmp_path):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(TrainingInterrupted, match="--resume") as exc:
        run_generate(smoke_config(tiny_sd_dir, steps=50), tmp_path, should_stop=should_stop)
    run_dir = exc.value.run_dir
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["completed_steps"] == 2
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == 2


class _NaNAfter:
    """Wraps a guidance; its loss turns NaN from step ``n`` on."""

    def __init__(self, inner, n):
        self.inner, self.n = inner, n
        self.num_views = inner.num_views

    def compute(self, images, az, el, step, gen, *, c2w=None):
        out = self.inner.compute(images, az, el, step, gen, c2w=c2w)
        if step >= self.n:
            out.loss = out.loss * float("nan")
        return out

    def describe(self):
        return self.inner.describe()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_sd_dir, tmp_path):
    from t23d.guidance import build_guidance

    cfg = smoke_config(tiny_sd_dir, steps=10, checkpoint_every=2)
    guidance = _NaNAfter(build_guidance(cfg.guidance, cfg.prompt, "", torch.device("cpu")), 5)
    with pytest.raises(NonFiniteLoss, match="loss term 'sds' became nan"):
        run_generate(cfg, tmp_path, guidance=guidance)
    (run_dir,) = tmp_path.iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "sds" in info["error"]
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == 4
    _, state = load_generate_state(run_dir, torch.device("cpu"))
    assert all(torch.isfinite(p).all() for p in state.field.parameters())


@pytest.mark.parametrize("prompt", ["", "   \t"])
def test_empty_prompt_is_refused_before_anything_is_written(tiny_sd_dir, tmp_path, prompt):
    with pytest.raises(T23dError, match="prompt is empty"):
        run_generate(smoke_config(tiny_sd_dir, prompt=prompt), tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_prior_folder_leaves_no_run_directory(tmp_path):
    with pytest.raises(T23dError, match="does not exist"):
        run_generate(smoke_config(tmp_path / "no_such_model"), tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


def test_folder_that_is_not_a_diffusers_pipeline(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hi")
    with pytest.raises(T23dError, match="model_index.json"):
        run_generate(smoke_config(tmp_path / "junk"), tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


def test_unwritable_output_folder(tiny_sd_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(T23dError, match="cannot write to the output folder"):
        run_generate(smoke_config(tiny_sd_dir), blocker / "out")


def test_resume_from_a_folder_that_is_not_a_run(tiny_sd_dir, tmp_path):
    with pytest.raises(T23dError, match="not a t23d run directory"):
        run_generate(smoke_config(tiny_sd_dir), resume=tmp_path)


def test_generate_with_the_deepfloyd_if_prior(tiny_if_dir, tmp_path):
    from t23d.guidance import DeepFloydGuidanceConfig

    cfg = smoke_config(tiny_if_dir, steps=2, export_at_end=False)
    cfg = dataclasses.replace(
        cfg, guidance=DeepFloydGuidanceConfig(pretrained=str(tiny_if_dir), resolution=32)
    )
    run_dir = run_generate(cfg, tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and "IF" in json.dumps(info["prior"]).upper()
