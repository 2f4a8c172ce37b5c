"""Does a learned toy prior know the penguin's front from its back? A Janus measure on the prior itself.

``bench_generate.py``'s Janus ratio needs an SDS field that shows the penguin's front-only marking (its
white belly) somewhere; when no field does, it is undefined. This measures the prior directly: the
denoising error ``E_{t, eps} |eps_hat(x_t) - eps|^2`` (the diffusion loss, a likelihood bound) of
renders of three versions of the penguin, seen in groups of 4 views (azimuths offset + 0/90/180/270,
the product's SDS cameras):

- ``true``: the penguin (white belly on the front only);
- ``janus``: a second belly on the back (the two-faced object SDS can make);
- ``plain``: no belly (all black, what the SDS fields of RESULTS.md came out as).

The same noise and timesteps are used for all three (paired), so differences are the prior's preference.
Per view region (front: |azimuth| < 45, back: > 135): ``janus - true`` on back views > 0 means the
prior dislikes a belly on the back; ``plain - true`` on front views > 0 means it wants the belly in front.
The IF-layout prior gets each view's view-suffix caption (as ``t23d generate`` feeds it); the MVDream-
layout prior gets the plain prompt and the 4 cameras.

    python benchmarks/learned_prior/prior_janus.py --if-prior /work/bench-data/priors/toy-if-16 \
        --mv-prior /work/bench-data/priors/toy-mv-16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scene import BLACK, WHITE, Part, ToyObject, ellipsoid, render_views, smooth_backgrounds, toy_objects  # noqa: E402


def penguin_variants() -> dict[str, ToyObject]:
    """``true``, ``janus`` (a mirrored belly on the back) and ``plain`` (the belly black) penguins."""
    true = toy_objects()["a penguin"]
    belly = true.parts[1]
    assert belly.color == WHITE
    back_belly = Part(ellipsoid((0, 0.12, -0.06), (0.23, 0.17, 0.37)), WHITE)
    janus = dataclasses.replace(true, parts=[*true.parts, back_belly])
    plain = dataclasses.replace(true, parts=[true.parts[0], Part(belly.sdf, BLACK), *true.parts[2:]])
    return {"true": true, "janus": janus, "plain": plain}


def group_cameras(groups: int, resolution: int, seed: int):
    """``groups`` groups of 4 SDS cameras of the fast preset (the product's framing)."""
    from t23d.optimise.config import preset
    from t23d.render.cameras import sample_random_views

    cfg = dataclasses.replace(preset("fast").camera, resolution=resolution, batch_size=groups)
    return sample_random_views(cfg, torch.Generator().manual_seed(seed), num_views=4)


def if_losses(folder: Path, images: torch.Tensor, views, draws: int, seed: int) -> torch.Tensor:
    """Per image ``[B]``: the IF-layout prior's mean epsilon error over ``draws`` (t, noise) pairs."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5EncoderModel, T5Tokenizer

    from t23d.guidance.deepfloyd import encode_prompts_t5
    from t23d.prompt.config import ViewPromptConfig
    from t23d.prompt.view import view_index, view_prompts

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()
    tok = T5Tokenizer.from_pretrained(folder, subfolder="tokenizer")
    enc = T5EncoderModel.from_pretrained(folder, subfolder="text_encoder").eval()
    acp = DDPMScheduler.from_pretrained(folder, subfolder="scheduler").alphas_cumprod.float()
    vcfg = ViewPromptConfig()
    emb = encode_prompts_t5(tok, enc, view_prompts("a penguin", vcfg), torch.device("cpu"))
    cond = emb[view_index(views.azimuth_deg, views.elevation_deg, vcfg)]  # [B, 77, D]
    x0 = images.permute(0, 3, 1, 2) * 2 - 1
    return _eps_error(lambda x, t: unet(x, t, encoder_hidden_states=cond).sample[:, :3], x0, acp, draws, seed)


def mv_losses(folder: Path, images: torch.Tensor, views, draws: int, seed: int) -> torch.Tensor:
    """Per image ``[B]``: the MVDream-layout prior's mean epsilon error (latents, 4-view groups)."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    from t23d.guidance.mvdream import mvdream_camera
    from t23d.guidance.mvdream_unet import MultiViewUNetModel
    from t23d.guidance.stable_diffusion import encode_prompts_clip

    unet = MultiViewUNetModel.from_pretrained(folder, subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").eval()
    tok = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    enc = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval()
    acp = DDIMScheduler.from_pretrained(folder, subfolder="scheduler").alphas_cumprod.float()
    n = images.shape[0]
    ctx = encode_prompts_clip(tok, enc, ["a penguin"], torch.device("cpu")).expand(n, -1, -1)
    camera = mvdream_camera(views.cameras.c2w)
    with torch.no_grad():
        z0 = vae.encode(images.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean * vae.config.scaling_factor
    return _eps_error(
        lambda x, t: unet(x, t, context=ctx, camera=camera, num_frames=4), z0, acp, draws, seed, 4
    )


@torch.no_grad()
def _eps_error(
    model, x0: torch.Tensor, acp: torch.Tensor, draws: int, seed: int, group: int = 1
) -> torch.Tensor:
    """Mean over ``draws`` of the per-image ``|model(x_t, t) - eps|^2`` (t uniform in 20..980, one per group)."""
    gen = torch.Generator().manual_seed(seed)
    n = x0.shape[0]
    total = torch.zeros(n)
    for _ in range(draws):
        t = torch.randint(20, 981, (n // group,), generator=gen).repeat_interleave(group)
        eps = torch.randn(x0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        total += (model(a.sqrt() * x0 + (1 - a).sqrt() * eps, t) - eps).square().mean(dim=(1, 2, 3))
    return total / draws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--if-prior", type=Path, default=None)
    ap.add_argument("--mv-prior", type=Path, default=None)
    ap.add_argument("--groups", type=int, default=16, help="camera groups of 4 views")
    ap.add_argument("--draws", type=int, default=32, help="(t, noise) draws per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for kind, folder, fn in (
        ("deepfloyd-if", args.if_prior, if_losses),
        ("mvdream", args.mv_prior, mv_losses),
    ):
        if folder is None:
            continue
        resolution = json.loads((folder / "toy_prior.json").read_text())["data_meta"]["resolution"]
        views = group_cameras(args.groups, resolution, args.seed)
        background = smooth_backgrounds(len(views.azimuth_deg), resolution, torch.Generator().manual_seed(1))
        az = views.azimuth_deg
        regions = {
            "front": az.abs() < 45,
            "side": (az.abs() >= 45) & (az.abs() <= 135),
            "back": az.abs() > 135,
        }
        losses = {}
        for name, obj in penguin_variants().items():
            images = render_views(obj, views.cameras, mode="albedo", background=background).rgb
            losses[name] = fn(folder, images, views, args.draws, args.seed)
        row = {}
        for region, sel in regions.items():
            row[region] = {name: round(float(loss[sel].mean()), 5) for name, loss in losses.items()}
            diff = {k: losses[k][sel] - losses["true"][sel] for k in ("janus", "plain")}
            for k, d in diff.items():
                row[region][f"{k}-true"] = round(float(d.mean()), 5)
                row[region][f"{k}-true_se"] = round(float(d.std() / max(1, int(sel.sum())) ** 0.5), 5)
        results[kind] = row
        print(kind, json.dumps(row, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
