"""Train the multi-view toy prior: a small camera-conditioned MVDream-layout latent diffusion model.

Data: ``make_data.py --views-per-group 4`` (groups of 4 views at azimuths offset + 0/90/180/270 deg, one
elevation, distance and fov per group, exactly as t23d's SDS loop renders them for MVDream; plain-prompt
captions). Two phases:

1. **VAE** (``--vae-steps``): the one-level ``AutoencoderKL`` learns to reconstruct the renders (MSE +
   a small KL term); its ``scaling_factor`` is then set to 1 / std of the latents, as Stable Diffusion's.
2. **UNet**: DDPM epsilon training on the VAE latents of whole groups, one timestep per group (MVDream's
   training), the camera condition from the product's own :func:`t23d.guidance.mvdream.mvdream_camera`,
   classifier-free-guidance dropout per group, AdamW and an EMA (what is saved). The CLIP text encoder is
   small, random and frozen; captions are encoded once with the product's
   :func:`t23d.guidance.stable_diffusion.encode_prompts_clip`.

No flips (a mirrored group would need mirrored cameras). ``--device cuda`` trains in bfloat16 autocast
with the budget on the wall clock; on CPU the budget is this process's CPU time. Weights go outside the
repository (default ``/work/bench-data/priors/toy-mv-32``).

    python benchmarks/learned_prior/make_data.py --views-per-group 4 --views-per-object 2000 \
        --out /work/bench-data/priors/data/toy-mv-32.npz
    python benchmarks/learned_prior/train_mv.py --minutes 90
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train.py

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model import caption_words  # noqa: E402
from model_mv import (  # noqa: E402
    ToyMVPriorConfig,
    build_clip_tokenizer,
    build_scheduler,
    build_text_encoder,
    build_unet,
    build_vae,
    config_dict,
    save_pipeline,
)
from train import loadavg, optimiser_step  # noqa: E402

DEFAULT_DATA = Path("/work/bench-data/priors/data/toy-mv-32.npz")
DEFAULT_PRIOR = Path("/work/bench-data/priors/toy-mv-32")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="the .npz of make_data.py --views-per-group 4"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_PRIOR, help="pipeline folder to write")
    ap.add_argument(
        "--minutes", type=float, default=90.0, help="UNet training budget (CPU minutes; wall on cuda)"
    )
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--vae-steps", type=int, default=1500)
    ap.add_argument("--vae-kl", type=float, default=1e-6, help="KL weight of the VAE phase")
    ap.add_argument("--batch", type=int, default=8, help="groups per UNet step (x4 images)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--cfg-dropout", type=float, default=0.1)
    ap.add_argument("--model-channels", type=int, default=32)
    ap.add_argument("--channel-mult", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--grid-steps", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def group_batch(num_groups: int, batch: int, views: int, generator: torch.Generator) -> torch.Tensor:
    """Image indices ``[batch * views]`` of ``batch`` random whole groups (groups are contiguous)."""
    groups = torch.randint(0, num_groups, (batch,), generator=generator)
    return (groups[:, None] * views + torch.arange(views)[None]).reshape(-1)


def train_vae(vae, images: torch.Tensor, args, device: torch.device, generator: torch.Generator) -> list:
    """Phase 1: reconstruction (+ KL) on random images; returns the loss history."""
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    history, running = [], []
    vae.train()
    for step in range(args.vae_steps):
        idx = torch.randint(0, len(images), (4 * args.batch,), generator=generator)
        x = (images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            post = vae.encode(x).latent_dist
            z = post.sample()
            rec = vae.decode(z).sample
        loss = F.mse_loss(rec.float(), x) + args.vae_kl * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(float(loss.detach()))
        if (step + 1) % 100 == 0:
            history.append([step + 1, round(float(np.mean(running)), 6)])
            print(f"vae step {step + 1} loss {np.mean(running):.5f}", flush=True)
            running = []
    vae.eval().requires_grad_(False)
    return history


@torch.no_grad()
def latent_std(vae, images: torch.Tensor, device: torch.device) -> float:
    """Standard deviation of the VAE latents (unscaled) over up to 2,048 images."""
    x = (images[:2048].permute(0, 3, 1, 2).float() / 127.5 - 1.0).to(device)
    return float(torch.cat([vae.encode(c).latent_dist.sample() for c in x.split(256)]).std())


@torch.no_grad()
def sample_groups(unet, vae, scheduler_config, cond, uncond, *, views: int, resolution: int, device, steps: int,
                  guidance_scale: float = 4.0, seed: int = 0) -> torch.Tensor:  # fmt: skip
    """DDIM + CFG samples of one group of ``views`` per caption embedding in ``cond [N, L, D]``.

    The group's cameras: azimuths 0/90/180/270 (front, left side, back, right side in t23d's frame), 15 deg
    elevation, distance 1.75, fov 55. Returns images ``[N, views, 3, R, R]`` in [0, 1].
    """
    from diffusers import DDIMScheduler

    from t23d.guidance.mvdream import mvdream_camera
    from t23d.render.cameras import look_at, spherical_to_position

    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(steps)
    n = cond.shape[0]
    azimuth = torch.arange(views, dtype=torch.float32) * (360.0 / views)
    position = spherical_to_position(azimuth, torch.full_like(azimuth, 15.0), torch.full_like(azimuth, 1.75))
    camera = mvdream_camera(look_at(position, torch.zeros(views, 3))).repeat(n, 1).to(device)  # [n*V, 16]
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n * views, 4, resolution, resolution, generator=gen).to(device)
    ctx = torch.cat([cond.repeat_interleave(views, 0), uncond.expand(n * views, -1, -1)]).to(device)
    for t in sched.timesteps:
        tt = t.to(device).expand(2 * n * views)
        out = unet(torch.cat([z, z]), tt, context=ctx, camera=torch.cat([camera, camera]), num_frames=views)
        eps_c, eps_u = out.float().chunk(2)
        z = sched.step(eps_u + guidance_scale * (eps_c - eps_u), t, z).prev_sample
    x = vae.decode(z / vae.config.scaling_factor).sample.float()
    return ((x.clamp(-1, 1) + 1) / 2).reshape(n, views, 3, resolution, resolution).cpu()


def save_grid(images: torch.Tensor, path: Path) -> None:
    """Tile ``[N, V, 3, R, R]`` into a PNG (rows: prompts; columns: views)."""
    from PIL import Image

    n, v, _, r, _ = images.shape
    grid = images.permute(0, 3, 1, 4, 2).reshape(n * r, v * r, 3)
    Image.fromarray((grid.numpy() * 255 + 0.5).astype(np.uint8)).save(path)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    from t23d.guidance.mvdream import mvdream_camera
    from t23d.guidance.stable_diffusion import encode_prompts_clip

    load_before, t_start = loadavg(), time.perf_counter()
    data = np.load(args.data)
    meta = json.loads(str(data["meta"]))
    views = int(meta.get("views_per_group", 1))
    if views < 2:
        raise SystemExit(f"{args.data}: single views; make it with make_data.py --views-per-group 4")
    images = torch.from_numpy(data["images"])  # [N, R, R, 3] uint8, groups contiguous
    caption_ids = torch.from_numpy(data["caption_ids"])  # [N]
    cameras = mvdream_camera(torch.from_numpy(data["c2w"]))  # [N, 16]
    captions: list[str] = meta["captions"]
    resolution = int(meta["resolution"])
    num_groups = len(images) // views
    cfg = ToyMVPriorConfig(
        resolution=resolution,
        model_channels=args.model_channels,
        channel_mult=tuple(args.channel_mult),
        num_views=views,
    )
    generator = torch.Generator().manual_seed(args.seed)

    stage = args.out.parent / (args.out.name + "-build")
    tokenizer = build_clip_tokenizer(caption_words(captions), stage / "tokenizer")
    text_encoder = build_text_encoder(len(tokenizer), cfg, seed=args.seed).eval().requires_grad_(False)
    emb = encode_prompts_clip(tokenizer, text_encoder, [*captions, ""], torch.device("cpu"))  # [C+1, 77, D]
    cond_table, uncond = emb[:-1].to(device), emb[-1].to(device)

    vae = build_vae(cfg, seed=args.seed).to(device)
    vae_history = train_vae(vae, images, args, device, generator)
    scale = 1.0 / latent_std(vae, images, device)
    vae.register_to_config(scaling_factor=scale)
    print(f"VAE done; scaling_factor {scale:.4f}", flush=True)

    unet = build_unet(cfg, seed=args.seed).to(device)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    scheduler = build_scheduler()
    alphas_cumprod = scheduler.alphas_cumprod.float().to(device)
    num_t = scheduler.config.num_train_timesteps
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    params_unet = sum(p.numel() for p in unet.parameters())
    print(
        f"{num_groups} groups of {views} at {resolution}px, {len(captions)} captions; UNet {params_unet / 1e6:.2f} M "
        f"params; load {load_before}",
        flush=True,
    )
    cuda = device.type == "cuda"
    step, elapsed, history, running = 0, 0.0, [], []
    budget = args.minutes * 60.0
    t_unet = time.perf_counter()
    while step < args.max_steps and elapsed < budget:
        t0, c0 = time.perf_counter(), time.process_time()
        idx = group_batch(num_groups, args.batch, views, generator)
        x0 = (images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0).to(device)
        drop = (
            (torch.rand(args.batch, generator=generator) < args.cfg_dropout)
            .repeat_interleave(views)
            .to(device)
        )
        ctx = torch.where(drop[:, None, None], uncond[None], cond_table[caption_ids[idx].to(device)])
        t = torch.randint(0, num_t, (args.batch,), generator=generator).repeat_interleave(views).to(device)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            z0 = vae.encode(x0).latent_dist.sample().float() * scale
        noise = torch.randn(z0.shape, generator=generator).to(device)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = unet(z_t, t, context=ctx, camera=cameras[idx].to(device), num_frames=views)
        loss = F.mse_loss(out.float(), noise)
        optimiser_step(unet, ema, opt, loss, step, args)
        step += 1
        elapsed += (time.perf_counter() - t0) if cuda else (time.process_time() - c0)
        running.append(float(loss.detach()))
        if step % 200 == 0:
            history.append([step, round(elapsed, 1), round(float(np.mean(running)), 5)])
            print(f"step {step} loss {np.mean(running):.4f} {elapsed / step:.3f} s/step", flush=True)
            running = []

    info = {
        "objects": meta["objects"],
        "captions": captions,
        "data": str(args.data),
        "data_meta": {k: v for k, v in meta.items() if k != "captions"},
        "num_images": len(images),
        "model": config_dict(cfg),
        "params_unet": params_unet,
        "text_encoder": "random CLIP, frozen",
        "vae_steps": args.vae_steps,
        "vae_loss_history": vae_history,
        "scaling_factor": scale,
        "steps": step,
        "batch_groups": args.batch,
        "lr": args.lr,
        "ema": args.ema,
        "cfg_dropout": args.cfg_dropout,
        "unet_train_seconds": round(time.perf_counter() - t_unet, 1),
        "total_wall_minutes": round((time.perf_counter() - t_start) / 60, 2),
        "loss_history": history,
        "load_before": load_before,
        "load_now": loadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name()})" if cuda else f", {args.threads} threads"),
        "command": "python " + " ".join(sys.argv),
    }
    save_pipeline(
        args.out, ema.cpu().float(), vae.cpu().float(), text_encoder, tokenizer, build_scheduler(), info
    )
    ema.to(device)
    vae.to(device)
    grid = sample_groups(
        ema, vae, dict(scheduler.config), cond_table, uncond[None], views=views, resolution=resolution,
        device=device, steps=args.grid_steps, seed=args.seed,
    )  # fmt: skip
    save_grid(grid, args.out / "samples.png")
    print(f"done: {step} UNet steps -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
