"""``t23d render RUN_DIR``: novel views of a trained run (a split, a camera file, or a turntable)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cameras_from_file(path: Path, scene: dict | None):
    """Cameras from a transforms.json-style file in the input's world frame (OpenGL c2w, fl_x/fl_y/cx/cy/w/h)."""
    import numpy as np
    import torch

    from t23d.common.errors import T23dError
    from t23d.render.cameras import Cameras

    try:
        data = json.loads(path.read_text())
        frames = data["frames"]
    except (OSError, ValueError, KeyError) as e:
        raise T23dError(f"camera file {path} is not a transforms.json-style file with 'frames' ({e})") from e
    w, h = int(data.get("w", 0)), int(data.get("h", 0))
    if "camera_angle_x" in data and not w:
        w = h = int(data.get("resolution", 256))
    if not (w and h):
        raise T23dError(f"camera file {path} needs image size 'w' and 'h'")
    fx = float(data.get("fl_x", 0.5 * w / np.tan(0.5 * float(data.get("camera_angle_x", 0.8)))))
    fy = float(data.get("fl_y", fx))
    cx, cy = float(data.get("cx", w / 2)), float(data.get("cy", h / 2))
    c2w = np.array([f["transform_matrix"] for f in frames], dtype=np.float64)  # [N, 4, 4]
    if scene is not None:
        # input world -> normalised frame; the normalisation is scale + translation, so only positions move
        inv = np.linalg.inv(np.asarray(scene["world_from_normalised"], dtype=np.float64))
        c2w = c2w.copy()
        c2w[:, :3, 3] = (inv[None, :3, :3] @ c2w[:, :3, 3:])[..., 0] + inv[:3, 3]
    intr = torch.tensor([[fx, fy, cx, cy]] * len(frames), dtype=torch.float32)
    return Cameras(torch.tensor(c2w, dtype=torch.float32), intr, w, h)


def _frames(out: dict, background: str):
    """``[B, H, W, 4]`` straight-alpha RGBA (``transparent``) or ``[B, H, W, 3]`` composited RGB, on CPU."""
    from t23d.render.preview import straight_rgba

    if background == "composite":
        return out["rgb"].cpu()
    return straight_rgba(out["rgb"], out["opacity"], out["background"]).cpu()


def _render_refine(run_dir: Path, args: argparse.Namespace) -> int:
    """``t23d render`` of a refine run: the refined mesh and colour field, rasterised over its background."""
    import torch

    from t23d.common.errors import T23dError
    from t23d.optimise.refine import render_views
    from t23d.optimise.refine_run import load_refine_run
    from t23d.render.cameras import orbit_cameras
    from t23d.render.preview import image_grid, save_gif, save_png, straight_rgba

    cfg, state = load_refine_run(run_dir)
    state.background.eval()
    out_dir = Path(args.out) if args.out else run_dir / "renders"
    background = getattr(args, "background", "transparent")

    def frames_of(cameras) -> torch.Tensor:
        """RGBA (straight alpha from the anti-aliased coverage, rendered over black) or composited RGB."""
        if background == "composite":
            return render_views(state, cameras).rgb.cpu()
        out = render_views(state, cameras, background=False)
        return straight_rgba(out.rgb, out.opacity, torch.zeros_like(out.rgb)).cpu()

    if args.cameras is None:
        c = cfg.camera
        views = orbit_cameras(
            args.frames or 36, args.resolution or 256, c.eval_distance, c.eval_fov, c.eval_elevation
        )
        with torch.no_grad():
            rgb = torch.cat(
                [render_views(state, views.cameras[i : i + 1]).rgb.cpu() for i in range(len(views.cameras))]
            )
            frames = torch.cat([frames_of(views.cameras[i : i + 1]) for i in range(len(views.cameras))])
        save_gif(out_dir / "turntable.gif", rgb)
        for i in range(len(frames)):
            save_png(out_dir / f"frame_{i:04d}.png", image_grid(frames[i : i + 1], 1))
        print(f"wrote {out_dir / 'turntable.gif'} and {len(frames)} frames frame_XXXX.png ({background})")
        return 0
    path = Path(args.cameras)
    if args.cameras in ("train", "test") or not path.is_file():
        raise T23dError(f"--cameras {args.cameras!r}: a refine run has no photo splits; give a camera file")
    cams = _cameras_from_file(path, None)
    images = []
    with torch.no_grad():
        for i in range(len(cams)):
            frame = frames_of(cams[i])
            images.append(frame[0])
            save_png(out_dir / f"view_{i:04d}.png", image_grid(frame, 1))
    save_png(out_dir / "grid.png", image_grid(torch.stack(images)))
    print(f"wrote {len(images)} views to {out_dir} ({background})")
    return 0


def main(args: argparse.Namespace) -> int:
    import torch

    from t23d.common.errors import T23dError
    from t23d.render.cameras import orbit_cameras
    from t23d.render.preview import image_grid, save_gif, save_png
    from t23d.render.volume import render_images
    from t23d.run.rundir import read_run

    run_dir = Path(args.run_dir)
    kind = read_run(run_dir)["t23d_run"]
    from t23d.run.lock import is_locked

    if is_locked(run_dir):
        import logging

        logging.getLogger("t23d.render").warning(
            "%s is still training: rendering its latest checkpoint, a snapshot of the run so far", run_dir
        )
    if kind == "refine":
        return _render_refine(run_dir, args)
    scene = None
    if kind == "generate":
        from t23d.optimise.generate import load_generate_state

        cfg, state = load_generate_state(run_dir)
        distance, fov, elevation = cfg.camera.eval_distance, cfg.camera.eval_fov, cfg.camera.eval_elevation
    else:
        from t23d.reconstruct.run import cameras_of, load_reconstruct_state, read_scene

        cfg, state = load_reconstruct_state(run_dir)
        scene = read_scene(run_dir)
        pos = torch.tensor(scene["c2w"])[:, :3, 3]
        distance = float(pos.norm(dim=-1).median())
        fov, elevation = 50.0, 20.0
    out_dir = Path(args.out) if args.out else run_dir / "renders"
    dev = next(state.field.parameters()).device
    state.field.eval()
    state.background.eval()
    background = getattr(args, "background", "transparent")
    appearance = None
    if kind != "generate":
        from t23d.reconstruct.train import photo_appearance

        appearance = photo_appearance(state)  # the neutral code: the photos' average appearance
    if args.cameras is None:
        res = args.resolution or 256
        views = orbit_cameras(args.frames or 36, res, distance, fov, elevation)
        out = render_images(
            state.field,
            state.background,
            views.cameras.to(dev),
            cfg.render,
            state.occupancy,
            appearance=appearance,
        )
        save_gif(out_dir / "turntable.gif", out["rgb"].cpu())
        frames = _frames(out, background)
        for i in range(len(frames)):
            save_png(out_dir / f"frame_{i:04d}.png", image_grid(frames[i : i + 1], 1))
        print(f"wrote {out_dir / 'turntable.gif'} and {len(frames)} frames frame_XXXX.png ({background})")
        return 0
    if args.cameras in ("train", "test"):
        if scene is None:
            raise T23dError("--cameras train/test needs a 't23d reconstruct' run; give a camera file instead")
        cams = cameras_of(scene, scene[f"{args.cameras}_indices"])
    else:
        path = Path(args.cameras)
        if not path.is_file():
            raise T23dError(
                f"--cameras {args.cameras!r} is neither 'train', 'test' nor an existing camera file"
            )
        cams = _cameras_from_file(path, scene)
    images = []
    for i in range(len(cams)):
        out = render_images(
            state.field, state.background, cams[i].to(dev), cfg.render, state.occupancy, appearance=appearance
        )
        frame = _frames(out, background)
        images.append(frame[0])
        save_png(out_dir / f"view_{i:04d}.png", image_grid(frame[:1], 1))
    save_png(out_dir / "grid.png", image_grid(torch.stack(images)))
    print(f"wrote {len(images)} views to {out_dir} ({background})")
    return 0
