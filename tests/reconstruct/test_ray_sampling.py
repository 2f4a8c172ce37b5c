"""The error map that guides a share of each step's training pixels (t23d.reconstruct.ray_sampling)."""

from __future__ import annotations

import pytest
import torch

from t23d.reconstruct.ray_sampling import ErrorMap, RaySamplingConfig


def test_the_guided_share_goes_where_the_error_is_and_the_rest_stays_uniform():
    """One cell of one photo holds all the error: the guided half of the batch lands in that cell's
    pixels, the uniform half spreads over every photo; all pixels lie in the images."""
    cfg = RaySamplingConfig(mode="error", share=0.5, cells=4)
    emap = ErrorMap(cfg, num_photos=3, height=20, width=30)
    emap.error.fill_(1e-9)
    emap.error[2, 1, 3] = 1.0  # rows 5..9, cols 22..29 of photo 2
    pick, row, col = emap.sample(2000, torch.Generator().manual_seed(0))
    assert pick.shape == row.shape == col.shape == (2000,)
    assert (row >= 0).all() and (row < 20).all() and (col >= 0).all() and (col < 30).all()
    guided = (pick == 2) & (row >= 5) & (row < 10) & (col >= 22)
    uniform_share = 5 * 8 / (3 * 20 * 30)  # the cell's share of all pixels
    assert guided.float().mean() == pytest.approx(0.5 + 0.5 * uniform_share, abs=0.03)
    assert set(pick.tolist()) == {0, 1, 2}
    assert len(set(row[guided].tolist())) == 5 and len(set(col[guided].tolist())) == 8  # the whole cell


def test_the_map_moves_towards_the_errors_measured_and_uniform_mode_draws_no_map():
    """A cell drawn keeps ``memory`` of its value and takes the rest from the mean error of its rays;
    cells not drawn keep theirs; the map is a buffer (checkpointed with the run)."""
    emap = ErrorMap(RaySamplingConfig(mode="error", cells=2, memory=0.25), num_photos=2, height=4, width=4)
    assert "error" in emap.state_dict() and emap.error.eq(1.0).all()
    pick, row, col = torch.tensor([1, 1, 0]), torch.tensor([0, 1, 3]), torch.tensor([3, 2, 0])
    emap.update(pick, row, col, torch.tensor([0.2, 0.6, 0.0]))
    want = torch.ones(2, 2, 2)
    want[1, 0, 1] = 0.25 + 0.75 * 0.4  # photo 1, top right: two rays, mean 0.4
    want[0, 1, 0] = 0.25  # photo 0, bottom left: one ray, error 0
    assert torch.allclose(emap.error, want)


def test_a_run_with_the_error_map_checkpoints_it(tmp_path):
    """``ray_sampling.mode: error`` adds the map to the training state's extras (saved and restored with
    the checkpoint); the default draws uniformly, with no map; an export's state (no image size) has none."""
    from t23d.field.background import ContractedBackground
    from t23d.reconstruct.config import ReconstructConfig, validate_reconstruct_config
    from t23d.reconstruct.train import build_reconstruct_state

    cfg = ReconstructConfig()
    assert cfg.ray_sampling.mode == "auto"  # resolved from the capture; unresolved, it draws uniformly
    plain = build_reconstruct_state(cfg, ContractedBackground(), torch.device("cpu"), 3, [0, 1], (8, 8))
    assert "rays" not in plain.extras
    cfg.ray_sampling = RaySamplingConfig(mode="uniform")
    assert (
        "rays"
        not in build_reconstruct_state(
            cfg, ContractedBackground(), torch.device("cpu"), 3, [0, 1], (8, 8)
        ).extras
    )
    cfg.ray_sampling = RaySamplingConfig(mode="error", cells=4)
    state = build_reconstruct_state(cfg, ContractedBackground(), torch.device("cpu"), 3, [0, 1], (8, 8))
    assert state.extras["rays"].error.shape == (2, 4, 4)  # the training photos only
    state.extras["rays"].error[1, 2, 3] = 7.0
    state.save(tmp_path, keep_last=1)
    again = build_reconstruct_state(cfg, ContractedBackground(), torch.device("cpu"), 3, [0, 1], (8, 8))
    again.load(tmp_path)
    assert again.extras["rays"].error[1, 2, 3] == 7.0
    assert "rays" not in build_reconstruct_state(cfg, ContractedBackground(), torch.device("cpu"), 3).extras
    cfg.ray_sampling = RaySamplingConfig(mode="errors")  # type: ignore[arg-type]
    from t23d.common.errors import ConfigError

    with pytest.raises(ConfigError, match="ray_sampling.mode"):
        validate_reconstruct_config(cfg)


def test_auto_draws_by_the_error_map_for_unmasked_photos_and_uniformly_for_masked_ones():
    """``mode: auto`` resolves from the capture (recorded with the reason); a mode set in the config stays."""
    from t23d.reconstruct.capture import ray_sampling_for
    from t23d.reconstruct.config import ReconstructConfig

    cfg = ReconstructConfig()
    assert ray_sampling_for(cfg, masked=False)[0].mode == "error"
    assert ray_sampling_for(cfg, masked=False)[1] == {"mode": "error", "reason": "auto: unmasked photos"}
    assert ray_sampling_for(cfg, masked=True)[0].mode == "uniform"
    cfg.ray_sampling = RaySamplingConfig(mode="uniform", share=0.3)
    assert ray_sampling_for(cfg, masked=False) == (
        cfg.ray_sampling,
        {"mode": "uniform", "reason": "set in the config"},
    )
