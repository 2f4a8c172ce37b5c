"""The learned toy prior's components in DeepFloyd IF stage-I layout, saved as a diffusers pipeline folder.

Same layout as ``DeepFloyd/IF-I-XL-v1.0`` (and ``tests/fixtures/tiny_priors.build_tiny_if``):
``model_index.json`` (``IFPipeline``), ``unet/`` (a pixel-space ``UNet2DConditionModel``, 3 -> 6
channels: noise and IF's learned-variance channels), ``text_encoder/`` (``T5EncoderModel``),
``tokenizer/`` (``T5Tokenizer``) and ``scheduler/`` (IF's ``DDPMScheduler`` config: squared-cosine
betas, 1000 steps, epsilon prediction). So ``t23d generate --prior FOLDER --config
configs/deepfloyd-if.yaml`` loads it through the product's own loader, as it would load the real IF.
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class ToyPriorConfig:
    """Sizes of the toy prior."""

    resolution: int = 32
    """Image side in pixels the UNet is trained at (IF stage I: 64)."""
    block_out_channels: tuple[int, ...] = (64, 128, 192)
    """UNet channels per resolution level (32, 16, 8 px at resolution 32)."""
    layers_per_block: int = 1
    """ResNet layers per down block (up blocks get one more, as in diffusers)."""
    attention_head_dim: int = 32
    """Channels per attention head in the cross-attention blocks."""
    cross_attention_dim: int = 128
    """Width the T5 embeddings are projected to inside the UNet (``encoder_hid_proj``)."""
    text_dim: int = 64
    """Hidden size of the T5 text encoder."""
    text_layers: int = 2
    """T5 encoder layers."""
    norm_num_groups: int = 16
    """GroupNorm groups (divides every entry of ``block_out_channels``)."""
    attention_levels: int = 2
    """How many of the lowest-resolution levels use cross-attention blocks (the others plain ResNets)."""


def caption_words(captions: list[str]) -> list[str]:
    """Distinct lower-cased words of ``captions`` (punctuation split off), in first-seen order."""
    words: list[str] = []
    for caption in captions:
        for word in caption.lower().replace(",", " ").replace(".", " ").split():
            if word not in words:
                words.append(word)
    return words


def build_tokenizer(words: list[str]):
    """A unigram T5 tokenizer with one piece per caption word (single characters as fallback)."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -1.0) for w in words]
    pieces += [(c, -5.0) for c in string.ascii_lowercase + string.digits + ",.'-"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=77)


def build_text_encoder(vocab_size: int, cfg: ToyPriorConfig, seed: int = 0):
    """A small random T5 encoder (it stays frozen: distinct captions give distinct embeddings)."""
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=cfg.text_dim,
            d_kv=cfg.text_dim // 4,
            d_ff=cfg.text_dim * 2,
            num_layers=cfg.text_layers,
            num_heads=4,
            dropout_rate=0.0,
            decoder_start_token_id=0,
        )
    )


def build_unet(cfg: ToyPriorConfig, seed: int = 0):
    """A pixel-space UNet with IF stage I's block types (text projection and pooled-text time embedding)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    levels = len(cfg.block_out_channels)
    attn = min(cfg.attention_levels, levels)
    down = ("ResnetDownsampleBlock2D",) * (levels - attn) + ("SimpleCrossAttnDownBlock2D",) * attn
    up = ("SimpleCrossAttnUpBlock2D",) * attn + ("ResnetUpsampleBlock2D",) * (levels - attn)
    return UNet2DConditionModel(
        sample_size=cfg.resolution,
        in_channels=3,
        out_channels=6,
        layers_per_block=cfg.layers_per_block,
        block_out_channels=cfg.block_out_channels,
        down_block_types=down,
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=up,
        cross_attention_dim=cfg.cross_attention_dim,
        encoder_hid_dim=cfg.text_dim,
        encoder_hid_dim_type="text_proj",
        attention_head_dim=cfg.attention_head_dim,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
        norm_num_groups=cfg.norm_num_groups,
    )


def build_scheduler():
    """IF stage I's scheduler config (``DeepFloyd/IF-I-XL-v1.0/scheduler``)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        variance_type="learned_range",
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=1.5,
        clip_sample=True,
        clip_sample_range=1.0,
    )


def write_pipeline(folder: Path, class_name: str, components: dict, info: dict) -> Path:
    """Write a diffusers pipeline folder: each component, ``toy_prior.json`` (``info``), then
    ``model_index.json`` last, so a half-written folder does not load.

    ``components``: name -> ``(save, library, class)``; ``save(path)`` writes the component's subfolder
    (a ``save_pretrained``), or is None for an absent component (``[null, null]`` in the index).
    """
    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").unlink(missing_ok=True)
    for name, (save, _, _) in components.items():
        if save is not None:
            save(folder / name)
    (folder / "toy_prior.json").write_text(json.dumps(info, indent=2))
    index = {"_class_name": class_name, "_diffusers_version": diffusers.__version__}
    index.update({name: [library, cls] for name, (_, library, cls) in components.items()})
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def save_pipeline(folder: Path, unet, text_encoder, tokenizer, scheduler, info: dict) -> Path:
    """Write the IF pipeline folder (:func:`write_pipeline`)."""
    components = {
        "unet": (unet.save_pretrained, "diffusers", "UNet2DConditionModel"),
        "text_encoder": (text_encoder.save_pretrained, "transformers", "T5EncoderModel"),
        "tokenizer": (tokenizer.save_pretrained, "transformers", "T5Tokenizer"),
        "scheduler": (scheduler.save_pretrained, "diffusers", "DDPMScheduler"),
        "safety_checker": (None, None, None),
        "feature_extractor": (None, None, None),
        "watermarker": (None, None, None),
    }
    return write_pipeline(folder, "IFPipeline", components, info)


def config_dict(cfg: ToyPriorConfig) -> dict:
    """JSON-able sizes."""
    return asdict(cfg)
