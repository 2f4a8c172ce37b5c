"""Camera pose refinement: small learnt SE(3) corrections of each photo's pose (noisy SfM poses).

Each photo ``i`` gets a rotation vector ``w_i`` and a translation ``t_i`` (6 numbers, zero at the start)
applied in its camera frame, as nerfstudio's ``SO3xR3`` camera optimiser and BARF do::

    c2w_i' = c2w_i @ [[exp(w_i), t_i], [0, 1]]

so ``t_i`` moves the camera along its own axes and ``w_i`` turns it about its own centre. The corrections
are trained with the field by the photometric loss, with their own learning rate
(``PoseRefinementConfig.lr``); coarse-to-fine encodings help them converge (BARF), so pose refinement pairs
well with frequency annealing. Cameras follow :mod:`t23d.render.cameras` (OpenGL camera-to-world).

:func:`pose_errors` measures poses against ground truth after removing the similarity (scale, rotation,
translation) between the two frames, since a reconstruction is only defined up to that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class PoseRefinementConfig:
    """Optional refinement of the photos' camera poses during photo reconstruction."""

    enabled: bool = False
    """Learn a small SE(3) correction of every training photo's pose (``--refine-poses``)."""
    lr: float = 1e-3
    """Adam learning rate of the corrections (radians and normalised-frame units; the run's learning-rate
    decay applies too)."""
    start_step: int = 0
    """Corrections stay frozen (zero gradient) before this step, while the field finds a coarse shape."""


def axis_angle_to_matrix(w: Tensor) -> Tensor:
    """Rotation matrices ``[N, 3, 3]`` of rotation vectors ``w`` [N, 3] (Rodrigues; differentiable,
    exact at zero)."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]  # [N, 1, 1]
    theta = theta2.clamp(min=1e-12).sqrt()
    small = theta2 < 1e-8
    # sin(t)/t and (1 - cos t)/t^2, with their Taylor series near 0
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp(min=1e-12))
    zero = torch.zeros_like(w[:, 0])
    k = torch.stack([zero, -w[:, 2], w[:, 1], w[:, 2], zero, -w[:, 0], -w[:, 1], w[:, 0], zero], -1).reshape(
        -1, 3, 3
    )  # [N, 3, 3] cross-product matrix
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a * k + b * (k @ k)


class PoseCorrections(nn.Module):
    """Learnt corrections ``[num_images, 6]`` (rotation vector, translation) of camera poses."""

    def __init__(self, num_images: int):
        super().__init__()
        self.correction = nn.Parameter(torch.zeros(num_images, 6))

    def forward(self, c2w: Tensor) -> Tensor:
        """Corrected camera-to-world poses ``[N, 4, 4]`` of the ``num_images`` poses ``c2w`` [N, 4, 4]."""
        rot = axis_angle_to_matrix(self.correction[:, :3])  # [N, 3, 3]
        delta = torch.cat([rot, self.correction[:, 3:, None]], -1)  # [N, 3, 4]
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c2w.dtype, device=c2w.device).expand(len(c2w), 1, 4)
        return c2w @ torch.cat([delta, bottom], 1)

    @torch.no_grad()
    def magnitudes(self, c2w: Tensor) -> tuple[Tensor, Tensor]:
        """Rotation (degrees) and camera-centre shift (frame units) of each correction, ``[N]`` each."""
        rot_deg = self.correction[:, :3].norm(dim=-1) * (180.0 / math.pi)
        shift = (c2w[:, :3, :3] @ self.correction[:, 3:, None])[..., 0].norm(dim=-1)
        return rot_deg, shift


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(s, R, t)`` minimising ``|s R src + t - dst|^2`` over points ``[N, 3]`` (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rot = u @ sign @ vt
    var = (a * a).sum() / len(src)
    scale = float(np.trace(np.diag(d) @ sign) / var) if var > 0 else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def pose_errors(c2w: np.ndarray, c2w_true: np.ndarray) -> dict[str, float]:
    """Mean rotation error (degrees) and camera-centre error (units of the true frame) of poses ``c2w``
    ``[N, 4, 4]`` against ``c2w_true`` ``[N, 4, 4]``, after aligning the camera centres with the best
    similarity (Umeyama). Needs N >= 3 cameras not on one line."""
    c2w, c2w_true = np.asarray(c2w, np.float64), np.asarray(c2w_true, np.float64)
    scale, rot, trans = _umeyama(c2w[:, :3, 3], c2w_true[:, :3, 3])
    centres = scale * c2w[:, :3, 3] @ rot.T + trans
    r_aligned = rot[None] @ c2w[:, :3, :3]
    rel = np.einsum("nji,njk->nik", r_aligned, c2w_true[:, :3, :3])  # R_est^T R_true
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return {
        "rotation_deg": float(np.degrees(np.arccos(cos)).mean()),
        "position": float(np.linalg.norm(centres - c2w_true[:, :3, 3], axis=-1).mean()),
    }
