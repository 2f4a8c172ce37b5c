"""The refine loop end to end on a tiny random prior: resume bit-exactness, NaN handling, SDF sources,
colour distillation and errors (the CLI, Ctrl-C and ``generate --refine`` are in tests/cli)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from gen_helpers import REPO, smoke_config

from t23d.common.config import apply_overrides, load_yaml
from t23d.common.errors import ConfigError
from t23d.optimise.generate import run_generate
from t23d.optimise.refine_config import refine_preset
from t23d.optimise.refine_run import load_refine_run, refine_config_for, run_refine
from t23d.run.state import NonFiniteLoss

REFINE_SMOKE = REPO / "configs" / "refine-cpu-smoke.yaml"


@pytest.fixture(scope="module")
def stage1(tiny_sd_dir, tmp_path_factory) -> Path:
    return run_generate(
        smoke_config(tiny_sd_dir, steps=3, export_at_end=False), tmp_path_factory.mktemp("s1")
    )


def refine_config(source: Path, **changes):
    cfg = apply_overrides(refine_preset("fast"), load_yaml(REFINE_SMOKE))
    cfg = dataclasses.replace(cfg, device="cpu", export_at_end=False, **changes)
    return refine_config_for(source, cfg)


def _state_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    _, state = load_refine_run(run_dir, torch.device("cpu"))
    out = {f"mesh.{k}": v for k, v in state.mesh.state_dict().items()}
    out |= {f"color.{k}": v for k, v in state.color.state_dict().items()}
    out |= {f"bg.{k}": v for k, v in state.background.state_dict().items()}
    out["rng"] = state.generator.get_state()
    return {k: v.clone() for k, v in out.items()}


def test_refine_resume_continues_bit_exactly(stage1, tmp_path):
    full = run_refine(refine_config(stage1, steps=4), tmp_path / "a")
    half = run_refine(refine_config(stage1, steps=2), tmp_path / "b")
    resumed = run_refine(refine_config(stage1, steps=4), resume=half)
    assert resumed == half
    a, b = _state_tensors(full), _state_tensors(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert a["mesh.offsets"].abs().max() > 0  # the vertices did move
    info = json.loads((half / "run.json").read_text())
    assert info["completed_steps"] == 4 and info["resumed_from_step"] == 2


class _NaNAfter:
    """Wraps a guidance; its loss turns NaN from step ``n`` on."""

    def __init__(self, inner, n):
        self.inner, self.n = inner, n

    def compute(self, images, az, el, step, gen):
        out = self.inner.compute(images, az, el, step, gen)
        if step >= self.n:
            out.loss = out.loss * float("nan")
        return out

    def describe(self):
        return self.inner.describe()


def test_refine_nan_loss_stops_and_keeps_last_good_checkpoint(stage1, tmp_path):
    from t23d.guidance import build_guidance

    cfg = refine_config(stage1, steps=8)
    guidance = _NaNAfter(build_guidance(cfg.guidance, cfg.prompt, "", torch.device("cpu")), 3)
    with pytest.raises(NonFiniteLoss, match="loss term 'sds' became nan"):
        run_refine(cfg, tmp_path, guidance=guidance)
    (run_dir,) = tmp_path.iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "sds" in info["error"]
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == 2
    _, state = load_refine_run(run_dir, torch.device("cpu"))
    assert torch.isfinite(state.mesh.vertices()).all()


def test_colour_field_starts_from_the_stage1_colours(stage1, tmp_path):
    """Right after initialisation the mesh renders with the stage-1 field's colours (distillation works):
    much closer than the same colour field left at its random initialisation."""
    import shutil

    from t23d.optimise.generate import load_generate_state
    from t23d.optimise.refine import init_refine_state
    from t23d.optimise.refine_run import render_source_fn_of
    from t23d.render.cameras import orbit_cameras
    from t23d.render.field_fns import render_field_fn_of

    # a stage-1 run with strong, spatially varying colours (its colour head's last layer amplified)
    stage1 = Path(shutil.copytree(stage1, tmp_path / "colourful"))
    cfg1, s1 = load_generate_state(stage1, torch.device("cpu"))
    with torch.no_grad():
        last = [m for m in s1.field.color_mlp if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(40.0)
    s1.save(stage1 / "checkpoints", 2)
    cams = orbit_cameras(2, 32, 1.75, 55.0).cameras
    field_fn = render_field_fn_of(s1.field, cfg1.render, s1.occupancy)
    errors = {}
    for steps in (0, 150):
        cfg = refine_config(stage1)
        state, facts = init_refine_state(
            dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, steps=steps)),
            torch.device("cpu"),
        )
        mesh_fn = render_source_fn_of(state)
        err, count = 0.0, 0
        for i in range(2):
            rgb_f, opa_f = field_fn(cams.c2w[i], cams.intrinsics[i], 32, 32)
            rgb_m, opa_m = mesh_fn(cams.c2w[i], cams.intrinsics[i], 32, 32)
            both = (opa_f > 0.5) & (opa_m > 0.9)
            err += float((rgb_f[both] / opa_f[both, None] - rgb_m[both]).abs().sum())
            count += int(both.sum()) * 3
        assert count > 60
        errors[steps] = err / count
    assert errors[150] < 0.03 and errors[150] < 0.3 * errors[0], errors


def test_refine_works_from_an_sdf_stage1_run(tiny_sd_dir, tmp_path):
    cfg1 = smoke_config(tiny_sd_dir, steps=2, export_at_end=False)
    cfg1 = dataclasses.replace(cfg1, field=dataclasses.replace(cfg1.field, geometry="sdf"))
    source = run_generate(cfg1, tmp_path / "s1")
    run_dir = run_refine(refine_config(source, steps=2), tmp_path / "r")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["init"]["threshold"] == 0.0  # the SDF's zero level


def test_explicit_nvdiffrast_on_cpu_is_refused_before_anything_is_written(stage1, tmp_path):
    from t23d.render.diffrast import RasterizerConfig

    cfg = refine_config(stage1, rasterizer=RasterizerConfig(backend="nvdiffrast"))
    with pytest.raises(ConfigError, match="nvdiffrast' but it cannot run here: the device is CPU"):
        run_refine(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
