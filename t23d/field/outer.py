"""The surroundings of an unmasked photo capture: a coarse NeRF of everything beyond the field's box.

Photos of an object in its surroundings (no masks) show walls, floors and trees at finite distances.
A direction-only environment map cannot explain them (they shift with the camera: parallax), so the
main field would turn them into fog inside its box. This model takes them instead, in the spirit of
NeRF++ (inside/outside split) and mip-NeRF 360 (contraction):

- Space is scaled so that the sphere around the field's box has radius 1 and then contracted:
  ``c(x) = x`` for ``|x| <= 1``, ``(2 - 1/|x|) x/|x|`` beyond, which maps all of space into the ball of
  radius 2; a hash grid over ``[-2, 2]^3`` (coarse: it is never exported) and a small MLP give density
  and a view-dependent colour there.
- Each ray takes ``num_samples`` samples from where it leaves the box (rays that miss the box: from
  their closest approach to the centre) out to ``far`` box radii, evenly spaced in disparity (1 /
  distance), stratified during training. Their colours are composited, then the remaining
  transmittance shows a smooth sky (a spherical-harmonics MLP of the direction).

The result is the background colour of each ray, composited behind the field's own samples by the
renderer. Colours are sRGB in [0, 1]; world frame as the field's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from t23d.field.encoding import spherical_harmonics
from t23d.field.mlp import make_mlp


def contract(x: Tensor) -> Tensor:
    """mip-NeRF 360 contraction of points ``x`` [N, 3] (unit sphere kept, the rest into radius 2)."""
    r = x.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    return torch.where(r <= 1.0, x, (2.0 - 1.0 / r) * x / r)


class OuterField(nn.Module):
    """Density and colour of the scene beyond a box, rendered into a per-ray background colour."""

    def __init__(
        self,
        aabb: Tensor,
        *,
        num_samples: int = 32,
        far: float = 1000.0,
        n_levels: int = 8,
        log2_hashmap_size: int = 17,
        max_resolution: int = 256,
        hidden_dim: int = 32,
        sh_degree: int = 2,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ):
        from t23d.field.hashgrid import HashGridConfig, HashGridEncoding

        super().__init__()
        aabb = torch.as_tensor(aabb, dtype=torch.float32)
        self.register_buffer("aabb", aabb.clone(), persistent=False)
        self.register_buffer("centre", aabb.mean(0), persistent=False)
        self.radius = float((aabb[1] - aabb[0]).norm()) / 2.0  # sphere around the box
        self.num_samples, self.far, self.sh_degree = int(num_samples), float(far), int(sh_degree)
        grid = HashGridConfig(
            n_levels=n_levels,
            log2_hashmap_size=log2_hashmap_size,
            base_resolution=16,
            max_resolution=max_resolution,
        )
        self.encoding = HashGridEncoding(grid, device=device, generator=generator)
        self.geometry = make_mlp(grid.output_dim, 16, hidden_dim, 1, generator)
        self.rgb = make_mlp(15 + sh_degree**2, 3, hidden_dim, 1, generator, output_activation="sigmoid")
        self.sky = make_mlp(9, 3, hidden_dim, 1, generator, output_activation="sigmoid")

    def sample_distances(
        self, origins: Tensor, directions: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """Sample boundaries ``t`` [R, K + 1] along each ray, from the box exit to ``far`` radii, even in 1/t."""
        from t23d.common.geometry import intersect_aabb

        _, exit_, hit = intersect_aabb(origins, directions, self.aabb)
        closest = ((self.centre - origins) * directions).sum(-1).clamp(min=0.0)
        start = torch.where(hit, exit_, closest).clamp(min=1e-3)  # [R]
        end = torch.full_like(start, self.far * self.radius).maximum(2.0 * start)
        k = self.num_samples
        u = torch.arange(k + 1, device=origins.device, dtype=origins.dtype) / k  # [K + 1]
        if generator is not None:  # jitter the inner boundaries by up to half a bin
            jitter = (torch.rand(len(origins), k + 1, generator=generator).to(origins) - 0.5) / k
            jitter[:, 0] = 0.0
            jitter[:, -1] = 0.0
            u = (u[None] + jitter).clamp(0.0, 1.0)
        else:
            u = u[None].expand(len(origins), k + 1)
        return 1.0 / ((1.0 - u) / start[:, None] + u / end[:, None])  # [R, K + 1]

    def forward(
        self, origins: Tensor, directions: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Background colour [R, 3] of rays ``origins``, ``directions`` [R, 3] (unit)."""
        r, k = len(origins), self.num_samples
        t = self.sample_distances(origins, directions, generator)  # [R, K + 1]
        mid = 0.5 * (t[:, 1:] + t[:, :-1])  # [R, K]
        delta = t[:, 1:] - t[:, :-1]
        pts = origins[:, None] + mid[..., None] * directions[:, None]  # [R, K, 3]
        x = contract((pts.reshape(-1, 3) - self.centre) / self.radius)  # [R*K, 3] in the radius-2 ball
        h = self.geometry(self.encoding((x + 2.0) / 4.0))  # [R*K, 16]
        sigma = torch.nn.functional.softplus(h[:, 0] - 1.0).reshape(r, k) / self.radius  # [R, K]
        d_enc = spherical_harmonics(directions, self.sh_degree)  # [R, S]
        rgb = self.rgb(torch.cat([h[:, 1:], d_enc.repeat_interleave(k, 0)], -1)).reshape(r, k, 3)
        # distances grow ~1000x along a ray: cap each step's optical depth (fully opaque beyond it anyway)
        tau = (sigma * delta).clamp(max=30.0)
        alpha = 1.0 - torch.exp(-tau)
        trans = torch.exp(-(torch.cumsum(tau, 1) - tau))  # [R, K]
        w = trans * alpha
        sky = self.sky(spherical_harmonics(directions, 3))  # [R, 3]
        rest = torch.exp(-tau.sum(1, keepdim=True))
        return (w[..., None] * rgb).sum(1) + rest * sky
