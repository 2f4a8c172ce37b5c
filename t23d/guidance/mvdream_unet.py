"""MVDream's multi-view UNet (Shi et al. 2023), with the weight names of the diffusers conversion t23d loads.

Target conversion: ``ashawkey/mvdream_diffusers`` (hub: ``ashawkey/mvdream-sd2.1-diffusers``), which
keeps the original MVDream/LDM module tree (``input_blocks``, ``middle_block``, ``output_blocks``,
``time_embed``, ``camera_embed``) inside a diffusers ``ModelMixin`` saved as ``unet/config.json`` +
``unet/diffusion_pytorch_model.safetensors`` (``_class_name: MultiViewUNetModel``). Same names, same
maths, written here in plain PyTorch (no xformers) so the checkpoint loads with ``from_pretrained``.

What makes it multi-view: (1) a camera embedding, an MLP of the flattened 4x4 camera-to-world matrix
added to the timestep embedding; (2) 3D self-attention: in every transformer block the tokens of the
``num_frames`` views of one sample attend to each other (``(b f) l c -> b (f l) c``), while
cross-attention to the text stays per view. Batches hold the views of a sample contiguously.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

NUM_GROUPS = 32
"""GroupNorm groups of every normalisation layer (fixed in MVDream), so channel counts are multiples of 32."""

CONVERSION_CONFIG_KEYS = (
    "image_size",
    "in_channels",
    "model_channels",
    "out_channels",
    "num_res_blocks",
    "attention_resolutions",
    "channel_mult",
    "num_head_channels",
    "transformer_depth",
    "context_dim",
    "use_checkpoint",
    "camera_dim",
)
"""The keys of ``unet/config.json`` in the ``ashawkey/mvdream_diffusers`` conversion: MVDream's
``sd-v2-base.yaml`` ``unet_config`` minus ``legacy``, ``use_linear_in_transformer``, ``use_spatial_transformer``."""


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[N] -> [N, dim]`` laid out ``[cos | sin]`` (the LDM convention, not diffusers')."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(
        timesteps.device
    )
    args = timesteps.float()[:, None] * freqs[None]  # [N, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the timestep(+camera) embedding added in between, 1x1 skip when widths differ."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(
            nn.GroupNorm(NUM_GROUPS, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            nn.GroupNorm(NUM_GROUPS, out_channels),
            nn.SiLU(),
            nn.Dropout(0.0),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb_layers(emb).to(x.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None. Weight names ``to_q/k/v``, ``to_out.0``."""

    def __init__(self, query_dim: int, context_dim: int | None, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # [b, l, h * d] -> [b, h, l, d]
            return t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2)

        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class GEGLU(nn.Module):
    """``proj`` to twice the width, one half gated by GELU of the other."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU MLP of width 4x (weight names ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock3D(nn.Module):
    """Self-attention across the views of a sample, cross-attention to the text per view, feed-forward."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int) -> None:
        super().__init__()
        self.attn1 = Attention(dim, None, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = Attention(dim, context_dim, heads, dim_head)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, n, c = x.shape  # [(b f), l, c]
        joint = x.reshape(bf // num_frames, num_frames * n, c)  # [b, (f l), c]: every view's tokens together
        x = (self.attn1(self.norm1(joint)) + joint).reshape(bf, n, c)
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer3D(nn.Module):
    """GroupNorm, linear in, ``depth`` 3D transformer blocks, linear out, residual (``use_linear_in_transformer``)."""

    def __init__(self, channels: int, heads: int, dim_head: int, context_dim: int, depth: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(NUM_GROUPS, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock3D(inner, heads, dim_head, context_dim) for _ in range(depth)]
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))  # [b, h w, inner]
        for block in self.transformer_blocks:
            tokens = block(tokens, context, num_frames)
        return x + self.proj_out(tokens).transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution (weight name ``op``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution (weight name ``conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class CondSequential(nn.Sequential):
    """A sequence of layers, each given what it needs: the embedding (ResBlock) or the text and views."""

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, num_frames: int
    ) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer3D):
                x = layer(x, context, num_frames)
            else:
                x = layer(x)
        return x


class MultiViewUNetModel(ModelMixin, ConfigMixin):
    """MVDream's UNet (``ashawkey/mvdream_diffusers`` layout): predicts the noise of ``num_frames`` views at once.

    The config keys are those of MVDream's ``sd-v2-base.yaml`` ``unet_config`` as the conversion saves
    them (SD 2.1 base: ``model_channels`` 320, ``channel_mult`` (1, 2, 4, 4), ``attention_resolutions``
    (4, 2, 1), ``num_head_channels`` 64, ``context_dim`` 1024, ``camera_dim`` 16). ImageDream's variant
    (``ip_dim > 0``, an image-prompt resampler) is not supported.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 4,
        model_channels: int = 320,
        out_channels: int = 4,
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (4, 2, 1),
        channel_mult: Sequence[int] = (1, 2, 4, 4),
        num_head_channels: int = 64,
        transformer_depth: int = 1,
        context_dim: int = 1024,
        camera_dim: int = 16,
        use_checkpoint: bool = False,
        ip_dim: int = 0,
    ) -> None:
        super().__init__()
        if ip_dim:
            raise ValueError(
                f"ip_dim={ip_dim}: this is an ImageDream (image-prompt) checkpoint; t23d supports text MVDream only"
            )
        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.camera_embed = nn.Sequential(
            nn.Linear(camera_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

        def attention(ch: int) -> SpatialTransformer3D:
            heads = ch // num_head_channels
            return SpatialTransformer3D(ch, heads, num_head_channels, context_dim, transformer_depth)

        self.input_blocks = nn.ModuleList(
            [CondSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))]
        )
        skip_channels, ch, ds = [model_channels], model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(attention(ch))
                self.input_blocks.append(CondSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(CondSequential(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = CondSequential(ResBlock(ch, emb_dim), attention(ch), ResBlock(ch, emb_dim))
        self.output_blocks = nn.ModuleList([])
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(attention(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(CondSequential(*layers))
        self.out = nn.Sequential(
            nn.GroupNorm(NUM_GROUPS, ch), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1)
        )

    def save_as_conversion(self, folder: str | Path) -> None:
        """``save_pretrained`` with ``config.json`` cut to the conversion's keys (:data:`CONVERSION_CONFIG_KEYS`
        plus diffusers' ``_`` entries), so a folder written here looks like the hub's (tests, toy priors)."""
        self.save_pretrained(folder)
        config_path = Path(folder) / "config.json"
        config = json.loads(config_path.read_text())
        kept = {k: v for k, v in config.items() if k.startswith("_") or k in CONVERSION_CONFIG_KEYS}
        config_path.write_text(json.dumps(kept, indent=2))

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        camera: torch.Tensor,
        num_frames: int,
    ) -> torch.Tensor:
        """Noise prediction for a batch of views.

        Args:
            x: ``[B * F, C, h, w]`` noisy latents, the F = ``num_frames`` views of each sample contiguous.
            timesteps: ``[B * F]`` diffusion timesteps.
            context: ``[B * F, L, context_dim]`` text embeddings (per view).
            camera: ``[B * F, camera_dim]`` flattened, normalised camera-to-world matrices
                (:func:`t23d.guidance.mvdream.mvdream_camera`).
            num_frames: F, the views that attend to each other.

        Returns:
            ``[B * F, out_channels, h, w]``.
        """
        if x.shape[0] % num_frames:
            raise ValueError(f"batch {x.shape[0]} is not a multiple of num_frames={num_frames}")
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(x.dtype))
        emb = emb + self.camera_embed(camera.to(x.dtype))
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context, num_frames)
            skips.append(h)
        h = self.middle_block(h, emb, context, num_frames)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context, num_frames)
        return self.out(h)
