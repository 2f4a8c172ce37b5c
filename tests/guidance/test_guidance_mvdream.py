"""MVDream: the multi-view UNet (weight names of the ashawkey/mvdream_diffusers conversion), its camera
convention, and 4-view SDS through the product loader with a tiny random model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from t23d.common.errors import T23dError
from t23d.guidance import MVDreamGuidanceConfig, StableDiffusionGuidanceConfig, build_guidance
from t23d.guidance.detect import guidance_config_for_prior
from t23d.guidance.mvdream import mvdream_camera
from t23d.guidance.mvdream_unet import CONVERSION_CONFIG_KEYS, MultiViewUNetModel, timestep_embedding
from t23d.render.cameras import RandomCameraConfig, orbit_cameras, sample_random_views

PROMPT = "a stone grotto"


@pytest.fixture(scope="module")
def mv(tiny_mvdream_dir: Path):
    return build_guidance(
        MVDreamGuidanceConfig(pretrained=str(tiny_mvdream_dir), vae_resolution=64), PROMPT, "", "cpu"
    )


def _mvdream_reference_camera(elevation_deg: float, azimuth_deg: float) -> torch.Tensor:
    """MVDream's own convention, written from its camera_utils: a y-up OpenGL look-at camera on the unit
    sphere, then converted to the Blender frame (x, y, z) -> (x, -z, y), flattened row-major."""
    e, a = math.radians(elevation_deg), math.radians(azimuth_deg)
    pos = torch.tensor(
        [math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)], dtype=torch.float64
    )
    forward = -pos / pos.norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, pos
    flip_yz = torch.tensor([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.float64)
    return (flip_yz @ c2w).reshape(16).float()


def test_camera_condition_matches_mvdream_convention() -> None:
    views = orbit_cameras(4, 16, distance=2.7, fov_deg=50.0, elevation_deg=15.0)
    cam = mvdream_camera(views.cameras.c2w)
    assert cam.shape == (4, 16)
    for i, az in enumerate((0.0, 90.0, 180.0, 270.0)):
        torch.testing.assert_close(cam[i], _mvdream_reference_camera(15.0, az), atol=1e-5, rtol=0)
    # distance and field of view do not enter the condition
    other = orbit_cameras(4, 64, distance=5.0, fov_deg=20.0, elevation_deg=15.0)
    torch.testing.assert_close(mvdream_camera(other.cameras.c2w), cam, atol=1e-5, rtol=0)


def test_timestep_embedding_is_cos_then_sin() -> None:
    emb = timestep_embedding(torch.tensor([0, 10]), 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    freqs = torch.exp(-math.log(10000.0) * torch.arange(4) / 4)
    torch.testing.assert_close(emb[1], torch.cat([torch.cos(10 * freqs), torch.sin(10 * freqs)]))


def test_sd21_sized_unet_has_the_conversion_weight_names() -> None:
    """The released checkpoint's config (MVDream sd-v2-base.yaml), built on the meta device (no memory)."""
    config = dict(
        image_size=32, in_channels=4, model_channels=320, out_channels=4, num_res_blocks=2,
        attention_resolutions=[4, 2, 1], channel_mult=[1, 2, 4, 4], num_head_channels=64,
        transformer_depth=1, context_dim=1024, use_checkpoint=False, camera_dim=16,
    )  # fmt: skip
    with torch.device("meta"):
        unet = MultiViewUNetModel(**config)
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    # SD 2.1's UNet has 865.9M parameters; MVDream adds the camera MLP (16 -> 1280 -> 1280)
    camera_mlp = 16 * 1280 + 1280 + 1280 * 1280 + 1280
    assert sum(math.prod(s) for s in shapes.values()) == 865_910_724 + camera_mlp
    expected = {
        "time_embed.0.weight": (1280, 320),
        "camera_embed.0.weight": (1280, 16),
        "camera_embed.2.weight": (1280, 1280),
        "input_blocks.0.0.weight": (320, 4, 3, 3),
        "input_blocks.1.0.in_layers.2.weight": (320, 320, 3, 3),
        "input_blocks.1.0.emb_layers.1.weight": (320, 1280),
        "input_blocks.1.0.out_layers.3.weight": (320, 320, 3, 3),
        "input_blocks.1.1.norm.weight": (320,),
        "input_blocks.1.1.proj_in.weight": (320, 320),
        "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": (320, 320),
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
        "input_blocks.1.1.transformer_blocks.0.attn2.to_out.0.bias": (320,),
        "input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight": (2560, 320),
        "input_blocks.1.1.transformer_blocks.0.ff.net.2.weight": (320, 1280),
        "input_blocks.1.1.transformer_blocks.0.norm3.weight": (320,),
        "input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1),
        "input_blocks.10.0.in_layers.2.weight": (1280, 1280, 3, 3),
        "middle_block.1.transformer_blocks.0.attn1.to_v.weight": (1280, 1280),
        "middle_block.2.out_layers.3.weight": (1280, 1280, 3, 3),
        "output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.3.1.proj_out.weight": (1280, 1280),
        "output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
        "out.0.weight": (320,),
        "out.2.weight": (4, 320, 3, 3),
    }
    for name, shape in expected.items():
        assert shapes.get(name) == shape, (name, shapes.get(name))
    assert "input_blocks.10.1.norm.weight" not in shapes  # no attention at the coarsest level (ds 8)


def test_views_of_a_sample_attend_to_each_other_and_samples_stay_apart(mv) -> None:
    unet = mv.unet
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, 8, 8, generator=g)
    t = torch.full((8,), 500)
    ctx = mv.cond_embeddings.expand(8, -1, -1)
    cam = mvdream_camera(sample_random_views(RandomCameraConfig(), g, num_views=4).cameras.c2w)
    cam = torch.cat([cam, cam])
    with torch.no_grad():
        base = unet(x, t, context=ctx, camera=cam, num_frames=4)
        x2 = x.clone()
        x2[2] += 1.0  # change view 2 of sample 0
        moved = unet(x2, t, context=ctx, camera=cam, num_frames=4)
        single = unet(x2, t, context=ctx, camera=cam, num_frames=1)
        cam2 = cam.clone()
        cam2[:4] = cam2[:4].flip(0)
        recam = unet(x, t, context=ctx, camera=cam2, num_frames=4)
    assert (moved[0] - base[0]).abs().max() > 1e-4  # view 0 sees view 2 through the 3D self-attention
    torch.testing.assert_close(moved[4:], base[4:])  # sample 1 is independent of sample 0
    torch.testing.assert_close(
        single[0], unet(x, t, context=ctx, camera=cam, num_frames=1)[0]
    )  # 2D attention
    assert (recam[0] - base[0]).abs().max() > 1e-4  # the camera conditions the prediction
    with pytest.raises(ValueError, match="not a multiple of num_frames=4"):
        unet(x[:6], t[:6], context=ctx[:6], camera=cam[:6], num_frames=4)


class RecordingMVUNet(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []
        self.config = inner.config

    def forward(self, x, t, context, camera, num_frames):
        out = self.inner(x, t, context=context, camera=camera, num_frames=num_frames)
        self.calls.append(SimpleNamespace(x=x, t=t, context=context, camera=camera, num_frames=num_frames))
        return out


def test_four_view_sds_through_the_loader(mv, monkeypatch: pytest.MonkeyPatch) -> None:
    assert type(mv.unet).__name__ == "MultiViewUNetModel" and mv.num_views == 4
    assert not any(p.requires_grad for p in mv.unet.parameters())
    assert mv.cond_embeddings.shape[0] == 1 and mv.view_prompt_list == [PROMPT]  # no view suffixes
    unet = RecordingMVUNet(mv.unet)
    monkeypatch.setattr(mv, "unet", unet)
    views = sample_random_views(
        RandomCameraConfig(resolution=24, batch_size=2), torch.Generator().manual_seed(1), 4
    )
    images = torch.rand(8, 24, 24, 3, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    out = mv.compute(
        images,
        views.azimuth_deg,
        views.elevation_deg,
        4000,
        torch.Generator().manual_seed(3),
        c2w=views.cameras.c2w,
    )
    out.loss.backward()
    (call,) = unet.calls
    assert call.num_frames == 4 and call.x.shape == (16, 4, 8, 8)
    cam = mvdream_camera(views.cameras.c2w)
    torch.testing.assert_close(call.camera, torch.cat([cam, cam]))  # cond half, then uncond half
    # one timestep per group of 4 views, within the annealed range at step 4000
    t = out.timesteps
    assert t.shape == (8,) and len(set(t[:4].tolist())) == 1 and len(set(t[4:].tolist())) == 1
    lo, hi = mv.timestep_range(4000)
    assert lo <= int(t.min()) and int(t.max()) <= hi
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert mv.describe()["kind"] == "mvdream" and mv.describe()["num_views"] == 4


def test_bad_batches_are_refused(mv) -> None:
    views = sample_random_views(
        RandomCameraConfig(resolution=16, batch_size=3), torch.Generator().manual_seed(0)
    )
    images = torch.rand(3, 16, 16, 3)
    with pytest.raises(T23dError, match=r"views in groups of 4 \(guidance.num_views\); got a batch of 3"):
        mv.compute(
            images, views.azimuth_deg, views.elevation_deg, 0, torch.Generator(), c2w=views.cameras.c2w
        )
    with pytest.raises(
        T23dError, match=r"needs each view's camera-to-world matrix c2w \[4, 4, 4\]; got None"
    ):
        mv.compute(torch.rand(4, 16, 16, 3), torch.zeros(4), torch.zeros(4), 0, torch.Generator())


def test_saved_as_the_conversion_it_keeps_only_its_config_keys_and_reloads(tmp_path: Path) -> None:
    """``save_as_conversion``: config.json holds the conversion's keys (and diffusers' own) and nothing of
    this class's other arguments (``ip_dim``); the folder loads back to the same weights."""
    torch.manual_seed(0)
    unet = MultiViewUNetModel(
        image_size=8, model_channels=32, num_res_blocks=1, attention_resolutions=(1,), channel_mult=(1,),
        num_head_channels=16, context_dim=16,
    )  # fmt: skip
    unet.save_as_conversion(tmp_path / "unet")
    config = json.loads((tmp_path / "unet" / "config.json").read_text())
    assert {k for k in config if not k.startswith("_")} == set(CONVERSION_CONFIG_KEYS)
    assert config["_class_name"] == "MultiViewUNetModel" and "ip_dim" not in config
    loaded = MultiViewUNetModel.from_pretrained(tmp_path / "unet")
    for (name, a), (_, b) in zip(unet.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_detected_from_model_index(tiny_mvdream_dir: Path) -> None:
    cfg = guidance_config_for_prior(StableDiffusionGuidanceConfig(vae_resolution=128), str(tiny_mvdream_dir))
    assert isinstance(cfg, MVDreamGuidanceConfig) and cfg.vae_resolution == 128 and cfg.guidance_scale == 50.0


def test_imagedream_checkpoint_is_refused(tiny_mvdream_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imagedream"
    shutil.copytree(tiny_mvdream_dir, folder)
    config = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**config, "ip_dim": 16}))
    with pytest.raises(T23dError, match="ImageDream"):
        build_guidance(MVDreamGuidanceConfig(pretrained=str(folder)), PROMPT, "", "cpu")
