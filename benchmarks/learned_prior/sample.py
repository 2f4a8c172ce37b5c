"""Sample the learned toy prior (DDIM with classifier-free guidance) and tile a grid of objects x views.

Loads the pipeline folder with the same diffusers/transformers classes and the same prompt encoding as
``t23d generate`` (:func:`t23d.guidance.deepfloyd.encode_prompts_t5`), so what the grid shows is what
score distillation is distilling from.

    python benchmarks/learned_prior/sample.py --prior /work/bench-data/priors/toy-if-32 \
        --out /work/bench-data/priors/toy-if-32/samples.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_PRIOR = Path("/work/bench-data/priors/toy-if-32")


@torch.no_grad()
def ddim_sample(
    unet,
    scheduler_config: dict,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    *,
    resolution: int,
    guidance_scale: float = 4.0,
    num_steps: int = 50,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images ``[N, 3, R, R]`` in [-1, 1] for text embeddings ``cond [N, L, D]`` (``uncond [1, L, D]``).

    DDIM (eta 0) on the prior's own noise schedule, with IF's dynamic thresholding from its config.
    Only the first 3 output channels (the noise) are used.
    """
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(num_steps)
    n = cond.shape[0]
    x = torch.randn(n, 3, resolution, resolution, generator=generator)
    embeddings = torch.cat([cond, uncond.expand(n, -1, -1)])
    for t in sched.timesteps:
        out = unet(torch.cat([x, x]), t.expand(2 * n), encoder_hidden_states=embeddings).sample[:, :3]
        eps_cond, eps_uncond = out.chunk(2)
        eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        x = sched.step(eps, t, x).prev_sample
    return x.clamp(-1, 1)


def load_prior(folder: Path):
    """``(unet, tokenizer, text_encoder, scheduler_config)`` from a pipeline folder (eval mode, CPU)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5EncoderModel, T5Tokenizer

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()
    tokenizer = T5Tokenizer.from_pretrained(folder, subfolder="tokenizer")
    text_encoder = T5EncoderModel.from_pretrained(folder, subfolder="text_encoder").eval()
    scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    return unet, tokenizer, text_encoder, dict(scheduler.config)


def sample_grid(
    unet,
    tokenizer,
    text_encoder,
    scheduler_config: dict,
    prompts: list[str],
    *,
    resolution: int,
    samples_per_view: int = 2,
    guidance_scale: float = 4.0,
    num_steps: int = 50,
    seed: int = 0,
) -> torch.Tensor:
    """Grid ``[rows * R, cols * R, 3]`` in [0, 1]: one row per prompt, columns = product view prompts
    (front, side, back, overhead) x ``samples_per_view``."""
    from t23d.guidance.deepfloyd import encode_prompts_t5
    from t23d.prompt.config import ViewPromptConfig
    from t23d.prompt.view import view_prompts

    captions = [
        c for p in prompts for c in view_prompts(p, ViewPromptConfig()) for _ in range(samples_per_view)
    ]
    emb = encode_prompts_t5(tokenizer, text_encoder, [*captions, ""], torch.device("cpu"))
    g = torch.Generator().manual_seed(seed)
    images = []
    for start in range(0, len(captions), 16):
        cond = emb[start : min(start + 16, len(captions))]
        images.append(
            ddim_sample(
                unet, scheduler_config, cond, emb[-1:], resolution=resolution,
                guidance_scale=guidance_scale, num_steps=num_steps, generator=g,
            )
        )  # fmt: skip
    x = (torch.cat(images) + 1) / 2  # [N, 3, R, R]
    cols = 4 * samples_per_view
    rows = len(prompts)
    x = x.reshape(rows, cols, 3, resolution, resolution).permute(0, 3, 1, 4, 2)
    return x.reshape(rows * resolution, cols * resolution, 3)


def save_grid_png(grid: torch.Tensor, path: Path, scale: int = 2) -> None:
    """Write a ``[H, W, 3]`` grid in [0, 1] as PNG, upscaled ``scale`` x with nearest neighbours."""
    from PIL import Image

    arr = (grid.clamp(0, 1).numpy() * 255 + 0.5).astype("uint8")
    img = Image.fromarray(arr)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp, format="PNG", optimize=True)
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", type=Path, default=DEFAULT_PRIOR)
    ap.add_argument("--out", type=Path, default=None, help="PNG path (default PRIOR/samples.png)")
    ap.add_argument("--prompts", nargs="*", default=None, help="default: the objects it was trained on")
    ap.add_argument("--samples-per-view", type=int, default=2)
    ap.add_argument("--guidance-scale", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    unet, tokenizer, text_encoder, sched_cfg = load_prior(args.prior)
    info = json.loads((args.prior / "toy_prior.json").read_text())
    prompts = args.prompts or info["objects"]
    grid = sample_grid(
        unet, tokenizer, text_encoder, sched_cfg, prompts, resolution=unet.config.sample_size,
        samples_per_view=args.samples_per_view, guidance_scale=args.guidance_scale,
        num_steps=args.steps, seed=args.seed,
    )  # fmt: skip
    out = args.out or args.prior / "samples.png"
    save_grid_png(grid, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
