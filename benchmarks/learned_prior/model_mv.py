"""The multi-view toy prior's components in the MVDream diffusers layout, saved as a pipeline folder.

Same layout as ``ashawkey/mvdream-sd2.1-diffusers`` (and ``tests/fixtures/tiny_priors.build_tiny_mvdream``):
``model_index.json`` (``MVDreamPipeline``), ``unet/`` (t23d's :class:`~t23d.guidance.mvdream_unet.MultiViewUNetModel`,
its ``config.json`` holding exactly the conversion's keys), ``vae/`` (``AutoencoderKL``), ``text_encoder/``
(``CLIPTextModel``), ``tokenizer/`` (``CLIPTokenizer``: vocab.json + merges.txt) and ``scheduler/`` (Stable
Diffusion's DDIM config). So ``t23d generate --prior FOLDER`` detects and loads it through the product's
own MVDream loader, as it would load the real checkpoint.

Scaled down for 2 CPU cores: the VAE has a single level (no downsampling: a 32 px render is a 32 x 32 x 4
latent, the latent size of MVDream's 256 px images), and the UNet has the toy IF prior's widths.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class ToyMVPriorConfig:
    """Sizes of the multi-view toy prior."""

    resolution: int = 32
    """Image (= latent) side in pixels."""
    model_channels: int = 32
    """UNet base width (MVDream's GroupNorm has 32 groups: widths are multiples of 32)."""
    channel_mult: tuple[int, ...] = (1, 2, 4)
    """UNet width multipliers per level (32, 64, 128 channels at 32, 16, 8 px)."""
    attention_resolutions: tuple[int, ...] = (2, 4)
    """Downsampling factors with (3D self- and text cross-) attention: the two coarsest levels."""
    num_head_channels: int = 32
    """Channels per attention head."""
    text_dim: int = 64
    """Hidden size of the CLIP text encoder (the UNet's ``context_dim``)."""
    text_layers: int = 2
    """CLIP text encoder layers."""
    vae_channels: int = 32
    """Width of the one-level VAE."""
    num_views: int = 4
    """Views denoised together (MVDream: 4)."""


def build_clip_tokenizer(words: list[str], folder: Path):
    """A CLIP BPE tokenizer whose merges make each caption word one token (characters as fallback).

    Written as the hub's files (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``) into ``folder``
    and loaded back, so what training encodes with is exactly what the product loads.
    """
    import string

    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    chars = [c for c in string.printable if not c.isspace()]
    for c in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(c, len(vocab))
    merges: list[str] = []
    for word in words:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            merge = f"{parts[0]} {parts[1]}"
            if merge not in merges:
                merges.append(merge)
            parts = [parts[0] + parts[1], *parts[2:]]
            vocab.setdefault(parts[0], len(vocab))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "pad_token": "<|endoftext|>",
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return CLIPTokenizer.from_pretrained(folder)


def build_text_encoder(vocab_size: int, cfg: ToyMVPriorConfig, seed: int = 0):
    """A small random CLIP text encoder (frozen: distinct captions give distinct embeddings)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=cfg.text_dim,
            intermediate_size=cfg.text_dim * 2,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=cfg.text_dim,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )


def build_vae(cfg: ToyMVPriorConfig, seed: int = 0):
    """A one-level ``AutoencoderKL`` (3 -> 4 latent channels, no downsampling, no mid-block attention)."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(cfg.vae_channels,),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        norm_num_groups=32,
        sample_size=cfg.resolution,
        mid_block_add_attention=False,
    )


def build_unet(cfg: ToyMVPriorConfig, seed: int = 0):
    """t23d's MVDream ``MultiViewUNetModel`` at the toy sizes (camera condition: flattened 4x4, 16 numbers)."""
    import torch

    from t23d.guidance.mvdream_unet import MultiViewUNetModel

    torch.manual_seed(seed)
    return MultiViewUNetModel(
        image_size=cfg.resolution,
        in_channels=4,
        model_channels=cfg.model_channels,
        out_channels=4,
        num_res_blocks=1,
        attention_resolutions=cfg.attention_resolutions,
        channel_mult=cfg.channel_mult,
        num_head_channels=cfg.num_head_channels,
        transformer_depth=1,
        context_dim=cfg.text_dim,
        camera_dim=16,
    )


def build_scheduler():
    """Stable Diffusion 2.1's DDIM scheduler config (scaled-linear betas 0.00085-0.012, 1000 steps, epsilon)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        clip_sample=False,
        set_alpha_to_one=False,
        prediction_type="epsilon",
    )


def save_pipeline(folder: Path, unet, vae, text_encoder, tokenizer, scheduler, info: dict) -> Path:
    """Write the MVDream pipeline folder (:func:`model.write_pipeline`; the UNet's config cut to the
    conversion's keys)."""
    from model import write_pipeline

    components = {
        "unet": (unet.save_as_conversion, "mv_unet", "MultiViewUNetModel"),
        "vae": (vae.save_pretrained, "diffusers", "AutoencoderKL"),
        "text_encoder": (text_encoder.save_pretrained, "transformers", "CLIPTextModel"),
        "tokenizer": (tokenizer.save_pretrained, "transformers", "CLIPTokenizer"),
        "scheduler": (scheduler.save_pretrained, "diffusers", "DDIMScheduler"),
        "feature_extractor": (None, None, None),
        "image_encoder": (None, None, None),
    }
    return write_pipeline(folder, "MVDreamPipeline", components, info)


def config_dict(cfg: ToyMVPriorConfig) -> dict:
    """JSON-able sizes."""
    return asdict(cfg)
