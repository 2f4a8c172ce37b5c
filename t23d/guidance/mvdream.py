"""MVDream multi-view SDS guidance (Shi et al. 2023): 4 camera-conditioned views denoised together.

The pipeline folder is Stable Diffusion's layout (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``) with MVDream's multi-view UNet (:mod:`t23d.guidance.mvdream_unet`), so the VAE encoding,
text encoding and loading are :class:`StableDiffusionGuidance`'s; this module adds the camera input,
the grouping of views and one timestep per group.

Camera convention. MVDream conditions on the camera-to-world matrix of each view in its "Blender"
frame: world +Z up, azimuth 0 on -Y and 90 on +X, OpenGL camera axes (looks down -Z, +Y up), the
camera position normalised to unit distance from the origin, the 4x4 matrix flattened row-major to 16
numbers (``camera_utils.get_camera(..., blender_coord=True)`` then ``normalize_camera``). t23d's world
frame and cameras (:mod:`t23d.render.cameras`) are exactly that frame, so :func:`mvdream_camera` only
normalises the translation. Field of view and distance do not enter the condition.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from t23d.common.errors import ConfigError, T23dError
from t23d.guidance.base import GuidanceOutput
from t23d.guidance.config import MVDreamGuidanceConfig
from t23d.guidance.sds import Conditioning
from t23d.guidance.stable_diffusion import StableDiffusionGuidance
from t23d.prompt.view import validate_prompt

logger = logging.getLogger(__name__)


def mvdream_camera(c2w: torch.Tensor) -> torch.Tensor:
    """MVDream's camera condition ``[B, 16]`` from t23d camera-to-world matrices ``[B, 4, 4]``.

    The translation is scaled to unit length (MVDream's ``normalize_camera``) and each matrix is
    flattened row-major; the rotation is used as is (t23d's frame is MVDream's, see the module docstring).
    """
    cam = c2w.detach().float().clone()  # [B, 4, 4]
    translation = cam[:, :3, 3]
    cam[:, :3, 3] = translation / (translation.norm(dim=-1, keepdim=True) + 1e-8)
    return cam.reshape(-1, 16)


class MVDreamGuidance(StableDiffusionGuidance):
    """Latent SDS against a frozen MVDream UNet: batches of ``num_views`` views with their cameras."""

    kind = "mvdream"
    example_id = "ashawkey/mvdream-sd2.1-diffusers"
    family = "MVDream"

    def __init__(
        self, cfg: MVDreamGuidanceConfig, prompt: str, negative_prompt: str, device: torch.device
    ) -> None:
        if cfg.num_views < 1:
            raise ConfigError(
                f"config key 'guidance.num_views': invalid value {cfg.num_views!r}; accepted: a positive "
                "integer (4 for the released MVDream checkpoints)"
            )
        super().__init__(cfg, prompt, negative_prompt, device)  # type: ignore[arg-type]
        self.num_views = cfg.num_views
        camera_dim = self.unet.config.camera_dim
        if camera_dim != 16:
            raise T23dError(
                f"prior {self.source!r}: the UNet's camera_dim is {camera_dim}; MVDream's camera condition is a "
                "flattened 4x4 matrix (camera_dim 16)"
            )

    def prompts(self, prompt: str) -> list[str]:
        """One prompt, no view suffixes: the camera tells MVDream the view."""
        return [validate_prompt(prompt)]

    def unet_class(self) -> Any:
        """MVDream's multi-view UNet (same weight names as the ``ashawkey/mvdream_diffusers`` conversion)."""
        from t23d.guidance.mvdream_unet import MultiViewUNetModel

        return MultiViewUNetModel

    def predict_model_output(
        self, z_t: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor, **unet_inputs: torch.Tensor
    ) -> torch.Tensor:
        """The multi-view UNet on ``[N, 4, h, w]`` (N a multiple of ``num_views``, groups contiguous)."""
        return self.unet(z_t, t, context=embeddings, camera=unet_inputs["camera"], num_frames=self.num_views)

    def conditioning(
        self, azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor, c2w: torch.Tensor | None
    ) -> Conditioning:
        """The prompt for every view, the negative prompt as unconditional, and each view's camera."""
        batch = azimuth_deg.shape[0]
        camera = mvdream_camera(c2w).to(self.device, self.dtype)  # type: ignore[arg-type]
        return Conditioning(
            positive=self.cond_embeddings.expand(batch, -1, -1),
            uncond=self.uncond_embedding.expand(batch, -1, -1),
            unet_inputs={"camera": camera},
        )

    def sample_t(self, batch: int, step: int, generator: torch.Generator) -> torch.Tensor:
        """One timestep per group of ``num_views`` views, shared by the group (MVDream's training)."""
        return super().sample_t(batch // self.num_views, step, generator).repeat_interleave(self.num_views)

    def score(
        self,
        z: torch.Tensor,
        azimuth_deg: torch.Tensor,
        elevation_deg: torch.Tensor,
        step: int,
        generator: torch.Generator,
        c2w: torch.Tensor | None,
    ) -> GuidanceOutput:
        """SDS loss of ``z [B, 4, h, w]``, B a multiple of ``num_views``, with cameras ``c2w [B, 4, 4]``.

        Views ``[g * V, (g + 1) * V)`` form group g (the order :func:`t23d.render.cameras.sample_random_views`
        returns with ``num_views = V``); both :meth:`compute` (RGB) and :meth:`compute_latents` come here.
        """
        batch = z.shape[0]
        if batch % self.num_views:
            raise T23dError(
                f"MVDream guidance needs views in groups of {self.num_views} (guidance.num_views); got a batch of "
                f"{batch}. The SDS loop renders groups of fixed relative azimuths when the prior is multi-view."
            )
        if c2w is None or tuple(c2w.shape) != (batch, 4, 4):
            got = None if c2w is None else tuple(c2w.shape)
            raise T23dError(
                f"MVDream guidance needs each view's camera-to-world matrix c2w [{batch}, 4, 4]; got {got}"
            )
        return super().score(z, azimuth_deg, elevation_deg, step, generator, c2w)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run.json."""
        out = super().describe()
        out["num_views"] = self.num_views
        return out
