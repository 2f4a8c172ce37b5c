"""Train the learned toy prior: a small text-conditioned pixel diffusion model in DeepFloyd IF stage-I layout.

Standard DDPM training (epsilon objective, uniform timesteps, IF's squared-cosine schedule) on the
renders of ``make_data.py``, with classifier-free-guidance dropout (the empty prompt's embedding
replaces the caption with probability ``--cfg-dropout``), random horizontal flips (every toy object is
mirror-symmetric about its front-back plane, and a flip keeps the view caption), AdamW and an EMA of
the weights (the EMA is what is saved). The T5 text encoder is small, random and frozen: captions are
encoded once with the product's own :func:`t23d.guidance.deepfloyd.encode_prompts_t5`, so the UNet
learns exactly the embeddings ``t23d generate`` will feed it. IF's extra 3 output channels (learned
variance) are trained towards 0, i.e. the log-variance midway between beta_t and the posterior's, so the
folder also samples sensibly with diffusers' IF scheduler; the product's SDS reads the first 3 only.

``--device cuda`` trains in bfloat16 autocast and counts the budget on the wall clock (on CPU: this
process's CPU time). Weights go outside the repository (default ``/work/bench-data/priors/toy-if-32``); the training state
for ``--resume`` beside it (``toy-if-32-train/``).

    python benchmarks/learned_prior/train.py --minutes 90
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

# OpenMP threads that sleep instead of spinning while they wait: on a shared, overloaded 2-core machine
# (load 13-15) a training step took 5-8 s with 2 passive threads, 12 s with 1 thread and 40-55 s with 2
# spinning threads (libgomp's default). Must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_data import DEFAULT_DATA  # noqa: E402
from model import (  # noqa: E402
    ToyPriorConfig,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    caption_words,
    config_dict,
    save_pipeline,
)
from sample import DEFAULT_PRIOR, sample_grid, save_grid_png  # noqa: E402


def loadavg() -> str:
    """The 1/5/15-minute load averages."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def optimiser_step(model, ema, opt, loss, step: int, args: argparse.Namespace) -> None:
    """One AdamW step on ``loss`` at training step ``step``: linear warm-up of the learning rate over
    ``args.warmup`` steps to ``args.lr``, gradients clipped to norm 1, then the EMA of the weights updated
    (decay ``min(args.ema, (1 + step) / (10 + step))``: it follows closely at first)."""
    for group in opt.param_groups:
        group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    decay = min(args.ema, (1 + step) / (10 + step))
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the .npz of make_data.py")
    ap.add_argument("--out", type=Path, default=DEFAULT_PRIOR, help="pipeline folder to write")
    ap.add_argument(
        "--minutes",
        type=float,
        default=90.0,
        help="training budget in CPU minutes of this process (fair on a shared machine; wall time is logged)",
    )
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=200, help="linear learning-rate warm-up steps")
    ap.add_argument("--ema", type=float, default=0.998, help="EMA decay of the saved weights")
    ap.add_argument("--cfg-dropout", type=float, default=0.1, help="probability of the empty prompt")
    ap.add_argument("--variance-weight", type=float, default=0.1, help="loss weight of channels 3-5 -> 0")
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128], help="UNet channels per level")
    ap.add_argument("--attention-levels", type=int, default=2, help="lowest-resolution levels with attention")
    ap.add_argument("--save-every", type=float, default=15.0, help="minutes between snapshots + sample grids")
    ap.add_argument("--grid-steps", type=int, default=50, help="DDIM steps of the final sample grid")
    ap.add_argument("--resume", action="store_true", help="continue from OUT-train/state.pt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (bfloat16 autocast, wall-clock budget)")
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads (with OMP_WAIT_POLICY=PASSIVE, the default here, 2 beat 1 on a loaded machine)",
    )
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from t23d.guidance.deepfloyd import encode_prompts_t5

    load_before = loadavg()
    data = np.load(args.data)
    meta = json.loads(str(data["meta"]))
    images = torch.from_numpy(data["images"])  # [N, R, R, 3] uint8
    caption_ids = torch.from_numpy(data["caption_ids"])  # [N]
    captions: list[str] = meta["captions"]
    resolution = int(meta["resolution"])
    cfg = ToyPriorConfig(
        resolution=resolution,
        block_out_channels=tuple(args.channels),
        attention_levels=args.attention_levels,
    )

    tokenizer = build_tokenizer(caption_words(captions))
    text_encoder = build_text_encoder(len(tokenizer), cfg, seed=args.seed).eval().requires_grad_(False)
    emb = encode_prompts_t5(tokenizer, text_encoder, [*captions, ""], torch.device("cpu"))  # [C+1, 77, D]
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    cond_table, uncond = emb[:-1].to(device), emb[-1].to(device)
    unet = build_unet(cfg, seed=args.seed).to(device)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    scheduler = build_scheduler()
    alphas_cumprod = scheduler.alphas_cumprod.float().to(device)  # [T]
    num_t = scheduler.config.num_train_timesteps
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    params_unet = sum(p.numel() for p in unet.parameters())
    params_text = sum(p.numel() for p in text_encoder.parameters())
    print(
        f"{len(images)} images at {resolution}px, {len(captions)} captions; UNet {params_unet / 1e6:.2f} M params, "
        f"T5 {params_text / 1e6:.3f} M (frozen); load {load_before}",
        flush=True,
    )

    state_dir = args.out.parent / (args.out.name + "-train")
    state_path = state_dir / "state.pt"
    step, elapsed, wall, history = 0, 0.0, 0.0, []
    generator = torch.Generator().manual_seed(args.seed)
    if args.resume and state_path.is_file():
        # on the CPU: the generator's state must stay there (the weights and optimiser follow their params)
        st = torch.load(state_path, weights_only=False, map_location="cpu")
        unet.load_state_dict(st["unet"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, elapsed, wall, history = st["step"], st["elapsed"], st["wall"], st["history"]
        generator.set_state(st["generator"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min)", flush=True)

    def snapshot(final: bool) -> None:
        info = {
            "objects": meta["objects"],
            "captions": captions,
            "data": str(args.data),
            "data_meta": {k: v for k, v in meta.items() if k != "captions"},
            "num_images": len(images),
            "model": config_dict(cfg),
            "params_unet": params_unet,
            "params_text_encoder": params_text,
            "text_encoder": "random T5, frozen",
            "steps": step,
            "batch": args.batch,
            "lr": args.lr,
            "ema": args.ema,
            "cfg_dropout": args.cfg_dropout,
            "train_cpu_minutes": round(elapsed / 60, 1),
            "train_wall_minutes": round(wall / 60, 1),
            "loss_history": history,
            "load_before": load_before,
            "load_now": loadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            + (
                f"device {torch.cuda.get_device_name()}, bfloat16 autocast"
                if cuda
                else f"{args.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
            ),
            "command": "python " + " ".join(sys.argv),
            "final": final,
        }
        ema_cpu = copy.deepcopy(ema).cpu().float()
        save_pipeline(args.out, ema_cpu, text_encoder, tokenizer, scheduler, info)
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {
                "unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                "elapsed": elapsed, "wall": wall, "history": history, "generator": generator.get_state(),
            },
            tmp,
        )  # fmt: skip
        tmp.replace(state_path)
        grid = sample_grid(
            ema_cpu, tokenizer, text_encoder, dict(scheduler.config), meta["objects"], resolution=resolution,
            samples_per_view=2 if final else 1, num_steps=args.grid_steps if final else 25,
        )  # fmt: skip
        save_grid_png(grid, args.out / "samples.png" if final else state_dir / f"samples_{step:06d}.png")
        print(
            f"snapshot at step {step} ({elapsed / 60:.1f} CPU min, {wall / 60:.1f} min), load {loadavg()}",
            flush=True,
        )

    budget = args.minutes * 60.0
    last_save = elapsed
    running = []
    while step < args.max_steps and elapsed < budget:
        t0, c0 = time.perf_counter(), time.process_time()
        idx = torch.randint(0, len(images), (args.batch,), generator=generator)
        x0 = images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [B, 3, R, R]
        flip = torch.rand(args.batch, generator=generator) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0).to(device)
        drop = (torch.rand(args.batch, generator=generator) < args.cfg_dropout).to(device)
        cond = torch.where(
            drop[:, None, None], uncond[None], cond_table[caption_ids[idx].to(device)]
        )  # [B, 77, D]
        t = torch.randint(0, num_t, (args.batch,), generator=generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = unet(x_t, t, encoder_hidden_states=cond).sample.float()  # [B, 6, R, R]
        loss_eps = torch.nn.functional.mse_loss(out[:, :3], noise)
        loss = loss_eps + args.variance_weight * out[:, 3:].square().mean()
        optimiser_step(unet, ema, opt, loss, step, args)
        step += 1
        elapsed += (time.perf_counter() - t0) if cuda else (time.process_time() - c0)
        wall += time.perf_counter() - t0
        running.append(float(loss_eps.detach()))
        if step % 100 == 0:
            history.append([step, round(elapsed, 1), round(wall, 1), round(float(np.mean(running)), 5)])
            print(
                f"step {step} loss {np.mean(running):.4f} {elapsed / step:.2f} CPU s/step, {wall / step:.2f} s/step",
                flush=True,
            )
            running = []
        if elapsed - last_save > args.save_every * 60:
            snapshot(final=False)
            last_save = elapsed
    snapshot(final=True)
    print(f"done: {step} steps in {elapsed / 60:.1f} CPU min ({wall / 60:.1f} min) -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
