"""Zero123 / Stable Zero123 image-conditioned SDS guidance (the only module importing diffusers for Zero123).

Zero-1-to-3 (Liu et al. 2023) fine-tunes Stable Diffusion to predict a novel view of the object in an
input image. Conditioning, as in the original model, threestudio's ``zero123_guidance.py`` /
``stable_zero123_guidance.py`` and the diffusers conversions:

- cross-attention context: one token, ``proj(concat(clip_image_embedding, pose))`` ``[B, 1, 768]``,
  where ``clip_image_embedding`` is the input image's CLIP ViT-L/14 image embedding (768) and ``pose`` the
  relative camera (4 numbers, :func:`zero123_pose`);
- UNet input: the noisy latent of the render concatenated with the input image's VAE latent (the
  posterior mode, *not* multiplied by the VAE scaling factor): 4 + 4 = 8 channels;
- classifier-free guidance: the unconditional branch zeroes both the context and the image latent.

Renders are encoded like Stable Diffusion's (bilinear resize to ``vae_resolution``, VAE posterior
sample, times the scaling factor) and the SDS maths is :mod:`t23d.guidance.base`'s.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from t23d.common.config import to_dict
from t23d.common.errors import ConfigError, T23dError
from t23d.guidance.base import (
    GuidanceOutput,
    ImageCondition,
    check_inputs,
    combine_cfg,
    eps_from_v,
    sample_timesteps,
    score_distillation,
    step_range,
)
from t23d.guidance.config import Zero123GuidanceConfig
from t23d.guidance.loading import free_device_memory, freeze, load_component, open_prior

logger = logging.getLogger(__name__)

ZERO123_SUBFOLDERS = ("unet", "vae", "image_encoder", "feature_extractor", "scheduler")
"""Subfolders every Zero123 pipeline folder holds (beside model_index.json and a camera projection)."""

PROJECTION_LAYOUTS: dict[str, str] = {"clip_camera_projection": "proj", "cc_projection": "projection"}
"""Camera-projection component -> name of its linear layer: ``clip_camera_projection`` in the
``Zero123Pipeline`` layout (ashawkey/zero123-xl-diffusers, ashawkey/stable-zero123-diffusers),
``cc_projection`` in the ``Zero1to3StableDiffusionPipeline`` layout (kxic/zero123-xl,
bennyguo/zero123-xl-diffusers)."""

POSE_DIM = 4
"""Numbers in Zero123's relative-camera conditioning."""

_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def zero123_pose(
    elevation_deg: torch.Tensor,
    azimuth_deg: torch.Tensor,
    distance: torch.Tensor,
    condition: ImageCondition,
    encoding: str,
) -> torch.Tensor:
    """``[B, 4]`` relative camera of views at ``elevation_deg``/``azimuth_deg``/``distance`` (each ``[B]``).

    Zero123 measures the polar angle from the up axis (``polar = 90 - elevation``), so the first number
    is ``radians(cond_elevation - elevation)``; azimuths turn the same way in t23d and Zero123
    (counter-clockwise seen from above), so the next two are ``sin``/``cos`` of
    ``radians(azimuth - cond_azimuth)``. The last is the distance change in world units (``zero123``) or
    the input view's own polar angle in radians (``stable-zero123``).
    """
    d_polar = torch.deg2rad(condition.elevation_deg - elevation_deg.float())
    d_azimuth = torch.deg2rad(azimuth_deg.float() - condition.azimuth_deg)
    if encoding == "zero123":
        last = distance.float() - condition.distance
    elif encoding == "stable-zero123":
        last = torch.full_like(d_polar, math.radians(90.0 - condition.elevation_deg))
    else:
        raise ConfigError(
            f"config key 'guidance.pose_encoding': invalid value {encoding!r}; accepted: 'zero123', "
            "'stable-zero123' (or 'auto' before loading)"
        )
    return torch.stack([d_polar, torch.sin(d_azimuth), torch.cos(d_azimuth), last], dim=-1)


def resolve_pose_encoding(encoding: str, source: str) -> str:
    """``encoding``, or for ``auto`` ``stable-zero123`` when ``source`` names a Stable Zero123 (contains "stable")."""
    if encoding in ("zero123", "stable-zero123"):
        return encoding
    if encoding != "auto":
        raise ConfigError(
            f"config key 'guidance.pose_encoding': invalid value {encoding!r}; accepted: 'auto', 'zero123', "
            "'stable-zero123'"
        )
    resolved = (
        "stable-zero123" if "stable" in Path(source).name.lower() or "stable" in source.lower() else "zero123"
    )
    logger.info(
        "Zero123 pose encoding: %s (from the prior's name %r; set guidance.pose_encoding to override)",
        resolved,
        source,
    )
    return resolved


def _fetch_file(
    source: str, subfolder: str, *, filename: str, local_files_only: bool, cache_dir: str
) -> Path:
    """Path of ``subfolder/filename`` in a local pipeline folder or (downloaded/cached) hub repository."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        path = folder / subfolder / filename if subfolder else folder / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        return path
    from huggingface_hub import hf_hub_download

    return Path(
        hf_hub_download(
            source,
            filename,
            subfolder=subfolder or None,
            local_files_only=local_files_only,
            cache_dir=cache_dir,
        )
    )


def _read_json(source: str, is_local: bool, subfolder: str, filename: str, local_files_only: bool) -> dict:
    path = load_component(_fetch_file, source, is_local, subfolder, local_files_only, filename=filename)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise T23dError(
            f"prior {source!r}: cannot read {subfolder + '/' if subfolder else ''}{filename}: {e}"
        ) from e
    if not isinstance(data, dict):
        raise T23dError(
            f"prior {source!r}: {subfolder + '/' if subfolder else ''}{filename} is not a JSON object"
        )
    return data


def _projection_subfolder(source: str, is_local: bool, local_files_only: bool) -> str:
    """The camera-projection component named by the pipeline's model_index.json."""
    index = _read_json(source, is_local, "", "model_index.json", local_files_only)
    for name in PROJECTION_LAYOUTS:
        if name in index:
            return name
    raise T23dError(
        f"prior {source!r} is not a Zero123 pipeline: its model_index.json (class "
        f"{index.get('_class_name')!r}) names no camera projection ({' or '.join(PROJECTION_LAYOUTS)}); pass a "
        "Zero123 / Stable Zero123 diffusers folder or hub id such as 'ashawkey/zero123-xl-diffusers'"
    )


def _load_state_dict(source: str, subfolder: str, *, local_files_only: bool, cache_dir: str) -> dict:
    """The projection's weights from ``diffusion_pytorch_model.safetensors`` (or ``.bin``)."""
    last: Optional[BaseException] = None
    for filename in _WEIGHT_FILES:
        try:
            path = _fetch_file(
                source, subfolder, filename=filename, local_files_only=local_files_only, cache_dir=cache_dir
            )
        except Exception as e:  # missing file, hub 404, or offline cache miss: try the next format
            last = e
            continue
        if filename.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    assert last is not None
    raise OSError(f"no {' or '.join(_WEIGHT_FILES)} in {subfolder}/") from last


def load_camera_projection(
    source: str, is_local: bool, subfolder: str, local_files_only: bool
) -> torch.nn.Linear:
    """The linear layer mapping ``[CLIP embedding, pose]`` to the UNet's cross-attention context."""
    state = load_component(_load_state_dict, source, is_local, subfolder, local_files_only)
    layer = PROJECTION_LAYOUTS[subfolder]
    weight, bias = state.get(f"{layer}.weight"), state.get(f"{layer}.bias")
    if weight is None or bias is None or weight.ndim != 2:
        raise T23dError(
            f"prior {source!r}: {subfolder}/ should hold a linear layer '{layer}' ({layer}.weight, {layer}.bias); "
            f"found keys {sorted(state)}"
        )
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
    linear.load_state_dict({"weight": weight.float(), "bias": bias.float()})
    return linear


class ClipPreprocess:
    """CLIP's image preprocessing from a ``preprocessor_config.json``, in torch (resize, centre crop, normalise)."""

    def __init__(self, config: dict, source: str) -> None:
        try:
            size = config.get("size", 224)
            self.shortest_edge = int(size["shortest_edge"] if isinstance(size, dict) else size)
            crop = config.get("crop_size", self.shortest_edge)
            self.crop = (
                (int(crop["height"]), int(crop["width"])) if isinstance(crop, dict) else (int(crop),) * 2
            )
            self.mean = torch.tensor(config["image_mean"], dtype=torch.float32).view(1, 3, 1, 1)
            self.std = torch.tensor(config["image_std"], dtype=torch.float32).view(1, 3, 1, 1)
        except (KeyError, TypeError, ValueError) as e:
            raise T23dError(
                f"prior {source!r}: feature_extractor/preprocessor_config.json lacks a usable "
                f"size/crop_size/image_mean/image_std ({e})"
            ) from e

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, 3, crop_h, crop_w]`` normalised CLIP input."""
        h, w = x.shape[-2:]
        scale = self.shortest_edge / min(h, w)
        size = (max(self.crop[0], round(h * scale)), max(self.crop[1], round(w * scale)))
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (size[0] - self.crop[0]) // 2, (size[1] - self.crop[1]) // 2
        x = x[..., top : top + self.crop[0], left : left + self.crop[1]]
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


class Zero123Guidance:
    """SDS against a frozen Zero123 UNet conditioned on one input image and each view's relative camera."""

    kind = "zero123"
    num_views = 1
    """Views denoised together (Zero123 scores each view on its own)."""

    def __init__(self, cfg: Zero123GuidanceConfig, condition: ImageCondition, device: torch.device) -> None:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPVisionModelWithProjection

        self.cfg = cfg
        self.device = torch.device(device)
        if cfg.vae_resolution <= 0 or cfg.vae_resolution % 8 != 0:
            raise ConfigError(
                f"config key 'guidance.vae_resolution': invalid value {cfg.vae_resolution!r}; accepted: a "
                "positive multiple of 8 (256 for Zero123, 64-128 on CPU)"
            )
        _check_condition(condition)
        self.condition = condition
        prior = open_prior(
            cfg.pretrained, cfg.local_files_only, cfg.half_precision, self.device,
            example_id="ashawkey/zero123-xl-diffusers", required=ZERO123_SUBFOLDERS, family="Zero123",
        )  # fmt: skip
        self.source, self.is_local, self.dtype = prior.source, prior.is_local, prior.dtype
        self.pose_encoding = resolve_pose_encoding(cfg.pose_encoding, self.source)
        self.projection_subfolder = _projection_subfolder(**prior.location)

        self.alphas_cumprod, self.num_train_timesteps, self.prediction_type = prior.scheduler_constants()
        preprocess = ClipPreprocess(
            _read_json(subfolder="feature_extractor", filename="preprocessor_config.json", **prior.location),
            self.source,
        )
        image_encoder = prior.load_frozen(CLIPVisionModelWithProjection.from_pretrained, "image_encoder")
        projection = freeze(load_camera_projection(subfolder=self.projection_subfolder, **prior.location)).to(
            self.device
        )
        self.unet = prior.load_frozen(UNet2DConditionModel.from_pretrained, "unet", low_cpu_mem_usage=False)
        self.vae = prior.load_frozen(AutoencoderKL.from_pretrained, "vae", low_cpu_mem_usage=False)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self._check_shapes(image_encoder, projection)
        self.projection = projection

        # The input view: CLIP image embedding [1, 1, D] and VAE latent (posterior mode, unscaled) [1, 4, h, w].
        with torch.no_grad():
            image = condition.image.permute(2, 0, 1)[None].float().to(self.device)  # [1, 3, H, W]
            embeds = image_encoder(preprocess(image).to(self.dtype)).image_embeds  # [1, D]
            self.image_embedding = embeds.float()[:, None]  # [1, 1, D]
            x = F.interpolate(image, size=(cfg.vae_resolution,) * 2, mode="bilinear", align_corners=False)
            self.image_latent = self.vae.encode(
                (x * 2.0 - 1.0).to(self.dtype)
            ).latent_dist.mode()  # [1, 4, h, w]
        del image_encoder
        free_device_memory(self.device)

    def _check_shapes(self, image_encoder: Any, projection: torch.nn.Linear) -> None:
        unet_in, latent = int(self.unet.config.in_channels), int(self.vae.config.latent_channels)
        if unet_in != 2 * latent:
            raise T23dError(
                f"prior {self.source!r}: the UNet takes {unet_in} input channels; a Zero123 UNet takes {2 * latent} "
                f"(the {latent}-channel noisy latent and the input image's latent). Is this a Stable Diffusion "
                "prior? Pass a Zero123 / Stable Zero123 folder with --prior"
            )
        embed_dim = int(image_encoder.config.projection_dim)
        if projection.in_features != embed_dim + POSE_DIM:
            raise T23dError(
                f"prior {self.source!r}: {self.projection_subfolder}/ takes {projection.in_features} inputs but the "
                f"image encoder gives {embed_dim} + {POSE_DIM} pose numbers"
            )
        context_dim = int(self.unet.config.cross_attention_dim)
        if projection.out_features != context_dim:
            raise T23dError(
                f"prior {self.source!r}: {self.projection_subfolder}/ gives {projection.out_features} features but "
                f"the UNet's cross-attention takes {context_dim}"
            )

    # --- conditioning ---------------------------------------------------------------------------
    def pose(
        self, elevation_deg: torch.Tensor, azimuth_deg: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        """``[B, 4]`` relative camera of each view (see :func:`zero123_pose`), on the device."""
        return zero123_pose(elevation_deg, azimuth_deg, distance, self.condition, self.pose_encoding).to(
            self.device
        )

    def context(self, pose: torch.Tensor) -> torch.Tensor:
        """Cross-attention context ``[B, 1, D]`` from ``pose [B, 4]``: ``proj([clip embedding, pose])``."""
        embedding = self.image_embedding.expand(pose.shape[0], -1, -1)  # [B, 1, D_clip]
        return self.projection(torch.cat([embedding, pose[:, None].float()], dim=-1))  # [B, 1, D]

    def predict_noise(self, z_t: torch.Tensor, t: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Classifier-free-guided noise prediction ``[B, 4, h, w]`` (float32, no grad).

        Args:
            z_t: ``[B, 4, h, w]`` noisy latents; t: ``[B]`` timesteps on the device; pose: ``[B, 4]``.
        """
        with torch.no_grad():
            b = z_t.shape[0]
            context = self.context(pose)  # [B, 1, D]
            latent = self.image_latent.expand(b, -1, -1, -1)  # [B, 4, h, w]
            if latent.shape[-2:] != z_t.shape[-2:]:
                raise T23dError(
                    f"Zero123: render latents are {tuple(z_t.shape[-2:])} but the input image's latent is "
                    f"{tuple(latent.shape[-2:])}"
                )
            model_in = torch.cat(
                [torch.cat([z_t, latent], dim=1), torch.cat([z_t, torch.zeros_like(latent)], dim=1)], dim=0
            )  # [2B, 8, h, w]: conditional, then unconditional (zeroed image latent and context)
            contexts = torch.cat([context, torch.zeros_like(context)], dim=0)  # [2B, 1, D]
            t2 = torch.cat([t, t])
            out = self.unet(model_in.to(self.dtype), t2, encoder_hidden_states=contexts.to(self.dtype)).sample
            out = out.float()
            if self.prediction_type == "v_prediction":
                alpha_bar = self.alphas_cumprod[t2].view(-1, 1, 1, 1)
                out = eps_from_v(out, torch.cat([z_t, z_t]).float(), alpha_bar)
            eps_cond, eps_uncond = out.chunk(2, dim=0)
            return combine_cfg(eps_uncond, eps_cond, self.cfg.guidance_scale)

    def encode(self, images_bchw: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> scaled VAE latents ``[B, 4, R/8, R/8]`` (R = vae_resolution), differentiable.

        The latent is sampled from the posterior with noise drawn from ``generator`` on CPU.
        """
        x = images_bchw
        if x.shape[-2:] != (self.cfg.vae_resolution,) * 2:
            x = F.interpolate(x, size=(self.cfg.vae_resolution,) * 2, mode="bilinear", align_corners=False)
        posterior = self.vae.encode((x * 2.0 - 1.0).to(self.dtype)).latent_dist
        mean, std = posterior.mean, posterior.std  # [B, 4, h, w]
        noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(self.device, mean.dtype)
        return (mean + std * noise) * self.scaling_factor

    # --- the Guidance interface -----------------------------------------------------------------
    def compute(
        self,
        images: torch.Tensor,
        azimuth_deg: torch.Tensor,
        elevation_deg: torch.Tensor,
        step: int,
        generator: torch.Generator,
        *,
        c2w: torch.Tensor | None = None,
    ) -> GuidanceOutput:
        """SDS loss for ``images [B, H, W, 3]`` in [0, 1] seen from the given cameras.

        ``c2w [B, 4, 4]`` is required: the camera distance (norm of its translation) enters the pose.
        Random draws from ``generator``, in order: VAE posterior noise, t ``[B]``, eps.
        """
        if self.unet is None:
            raise RuntimeError("guidance was released; build a new one")
        check_inputs(images, azimuth_deg, elevation_deg)
        batch = images.shape[0]
        if c2w is None or tuple(c2w.shape) != (batch, 4, 4):
            raise T23dError(
                f"Zero123 guidance needs the views' camera-to-world matrices c2w of shape [{batch}, 4, 4] (for "
                f"their distance); got {None if c2w is None else tuple(c2w.shape)}"
            )
        distance = c2w[:, :3, 3].detach().float().norm(dim=-1).cpu()  # [B]
        pose = self.pose(elevation_deg.detach().cpu(), azimuth_deg.detach().cpu(), distance)  # [B, 4]
        z = self.encode(images.permute(0, 3, 1, 2).to(self.device), generator)  # [B, 4, h, w]

        min_step, max_step = step_range(
            self.cfg.min_step_percent, self.cfg.max_step_percent, step, self.num_train_timesteps
        )
        t = sample_timesteps(batch, min_step, max_step, generator)  # [B] CPU
        return score_distillation(
            z,
            t,
            generator,
            self.alphas_cumprod,
            lambda z_t, t_dev: self.predict_noise(z_t, t_dev, pose),
            self.cfg.weighting,
            self.cfg.grad_clip,
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run.json."""
        c = self.condition
        return {
            "kind": self.kind,
            "pretrained": self.source,
            "is_local_folder": self.is_local,
            "layout": self.projection_subfolder,
            "pose_encoding": self.pose_encoding,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "guidance_scale": self.cfg.guidance_scale,
            "weighting": self.cfg.weighting,
            "grad_clip": self.cfg.grad_clip,
            "prediction_type": self.prediction_type,
            "num_train_timesteps": self.num_train_timesteps,
            "vae_resolution": self.cfg.vae_resolution,
            "input_view": {
                "elevation_deg": c.elevation_deg,
                "azimuth_deg": c.azimuth_deg,
                "distance": c.distance,
            },
            "config": to_dict(self.cfg),
        }

    def release(self) -> None:
        """Drop the models and the input image's embeddings and free device memory."""
        self.unet = None
        self.vae = None
        self.projection = None
        self.image_embedding = None
        self.image_latent = None
        free_device_memory(self.device)


def _check_condition(condition: ImageCondition) -> None:
    image = condition.image
    if not isinstance(condition, ImageCondition) or image.ndim != 3 or image.shape[-1] != 3:
        raise T23dError(
            f"Zero123 guidance needs the input image as [H, W, 3]; got {getattr(image, 'shape', None)}"
        )
    if not (math.isfinite(condition.distance) and condition.distance > 0):
        raise T23dError(
            f"Zero123 guidance: the input view's distance must be positive, got {condition.distance}"
        )
