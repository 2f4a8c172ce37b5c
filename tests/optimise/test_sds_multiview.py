"""The SDS loop renders groups of fixed relative azimuths for a multi-view prior, and passes the cameras."""

from __future__ import annotations

import dataclasses

import torch

from t23d.guidance import MVDreamGuidanceConfig, build_guidance
from t23d.optimise.config import preset
from t23d.optimise.sds import build_state, sds_step


class Recorder:
    """Wraps a guidance and records what the loop gives it."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []
        self.num_views = inner.num_views

    def compute(self, images, az, el, step, gen, *, c2w=None):
        self.calls.append({"images": images.shape, "az": az.clone(), "el": el.clone(), "c2w": c2w})
        return self.inner.compute(images, az, el, step, gen, c2w=c2w)


def _cfg(folder, batch_size: int):
    cfg = preset("fast")
    return dataclasses.replace(
        cfg,
        prompt="a stone grotto",
        device="cpu",
        camera=dataclasses.replace(cfg.camera, resolution=16, batch_size=batch_size),
        guidance=MVDreamGuidanceConfig(pretrained=str(folder), vae_resolution=64),
    )


def test_multi_view_prior_gets_groups_of_four_views(tiny_mvdream_dir) -> None:
    cfg = _cfg(tiny_mvdream_dir, batch_size=2)
    guidance = Recorder(build_guidance(cfg.guidance, cfg.prompt, "", torch.device("cpu")))
    state = build_state(cfg, torch.device("cpu"))
    for _ in range(2):
        info = sds_step(cfg, state, guidance)
        assert torch.isfinite(torch.tensor(info.losses["total"]))
    first, second = guidance.calls
    assert first["images"] == (8, 16, 16, 3)  # 2 groups x 4 views
    az = first["az"].reshape(2, 4)
    rel = (az - az[:, :1]) % 360.0
    torch.testing.assert_close(rel, torch.tensor([0.0, 90.0, 180.0, 270.0]).expand(2, 4), atol=1e-3, rtol=0)
    el = first["el"].reshape(2, 4)
    torch.testing.assert_close(el, el[:, :1].expand(2, 4))
    assert first["c2w"].shape == (8, 4, 4)
    assert not torch.equal(first["az"], second["az"])  # a new random offset every step


def test_single_view_prior_keeps_independent_views(tiny_sd_dir) -> None:
    from t23d.guidance import StableDiffusionGuidanceConfig

    cfg = dataclasses.replace(
        _cfg(tiny_sd_dir, batch_size=3),
        guidance=StableDiffusionGuidanceConfig(pretrained=str(tiny_sd_dir), vae_resolution=64),
    )
    guidance = Recorder(build_guidance(cfg.guidance, cfg.prompt, "", torch.device("cpu")))
    sds_step(cfg, build_state(cfg, torch.device("cpu")), guidance)
    (call,) = guidance.calls
    assert call["images"] == (3, 16, 16, 3) and len(set(call["el"].tolist())) == 3
