"""Render the training images of the learned toy prior: procedural objects seen as ``t23d generate`` sees them.

Every image is drawn the way one SDS step of the product draws its view:

- camera: :func:`t23d.render.cameras.sample_random_views` with the camera config of the product preset
  (``--preset fast``: distance 1.5-2.0, fov 40-70 deg, elevation -10..45 deg uniform on the sphere,
  azimuth all around), plus ``--overhead-fraction`` of views at 60-85 deg elevation so that the
  ``overhead view`` caption has examples too;
- shading: :func:`t23d.render.shading.sample_shading` (albedo / Lambertian with a point light near the
  camera / textureless, t23d's own :func:`~t23d.render.shading.shade`), with the probabilities below;
- background: a random smooth colour field (what the learned ``MLPBackground`` shows);
- caption: exactly the product's view-dependent prompt, :func:`t23d.prompt.view.view_prompts` indexed
  by :func:`t23d.prompt.view.view_index` (e.g. ``"a red ball, back view"``).

With ``--views-per-group V`` (4 for the MVDream-layout prior of ``train_mv.py``) the images come in groups
the way the SDS loop renders them for a multi-view prior: ``sample_random_views(..., num_views=V)`` (one
elevation, distance, fov per group, azimuths ``offset + k * 360 / V``), one shading draw per group, and
the plain prompt as caption (MVDream takes no view suffixes: the camera tells the view). Every image's
camera-to-world matrix is saved (``c2w``), groups contiguous.

Output: one ``.npz`` (uint8 images ``[N, R, R, 3]``, coverage, caption index, object index, camera
angles) outside the repository, by default ``/work/bench-data/priors/data/toy-32.npz``.

    python benchmarks/learned_prior/make_data.py --views-per-object 2500 --resolution 32
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scene import render_views, smooth_backgrounds, toy_objects  # noqa: E402

DEFAULT_DATA = Path("/work/bench-data/priors/data/toy-32.npz")


def sample_cameras(
    num: int, resolution: int, overhead_fraction: float, preset_name: str, generator, views_per_group: int = 1
):
    """``num`` SDS cameras of the product preset; the last ``overhead_fraction`` look from 60-85 deg.

    With ``views_per_group = V > 1``: ``num / V`` groups of V cameras as the SDS loop draws them for a
    multi-view prior (``num`` a multiple of V)."""
    import dataclasses

    from t23d.optimise.config import preset
    from t23d.render.cameras import Cameras, SampledViews, sample_random_views

    cam_cfg = dataclasses.replace(preset(preset_name).camera, resolution=resolution)
    groups = num // views_per_group
    num_overhead = int(round(groups * overhead_fraction))
    plain = dataclasses.replace(cam_cfg, batch_size=groups - num_overhead)
    parts = [sample_random_views(plain, generator, num_views=views_per_group)]
    if num_overhead:
        over = dataclasses.replace(cam_cfg, batch_size=num_overhead, elevation_range=(60.0, 85.0))
        parts.append(sample_random_views(over, generator, num_views=views_per_group))
    cams = Cameras(
        torch.cat([p.cameras.c2w for p in parts]),
        torch.cat([p.cameras.intrinsics for p in parts]),
        resolution,
        resolution,
    )
    return SampledViews(
        cams, torch.cat([p.azimuth_deg for p in parts]), torch.cat([p.elevation_deg for p in parts])
    ), cam_cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_DATA, help="output .npz (outside the repo)")
    ap.add_argument("--resolution", type=int, default=32, help="image side in pixels (32, or 64)")
    ap.add_argument("--views-per-object", type=int, default=2500)
    ap.add_argument(
        "--views-per-group",
        type=int,
        default=1,
        help="1: independent views with view-suffix captions (IF-layout prior); 4: MVDream groups, plain captions",
    )
    ap.add_argument("--overhead-fraction", type=float, default=0.08)
    ap.add_argument("--preset", default="fast", help="product preset whose SDS cameras are matched")
    ap.add_argument("--albedo", type=float, default=0.35, help="probability of albedo-only shading")
    ap.add_argument("--lambertian", type=float, default=0.45, help="probability of Lambertian shading")
    ap.add_argument("--textureless", type=float, default=0.2, help="probability of textureless shading")
    ap.add_argument("--supersample", type=int, default=2, help="rays per pixel side (box filter)")
    ap.add_argument("--chunk", type=int, default=64, help="images rendered per batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    group = args.views_per_group
    if group < 1 or args.views_per_object % group or args.chunk % group:
        raise SystemExit(f"--views-per-object and --chunk must be multiples of --views-per-group ({group})")

    from t23d.prompt.config import ViewPromptConfig
    from t23d.prompt.view import view_index, view_prompts
    from t23d.render.shading import ShadingConfig, sample_shading

    view_cfg = ViewPromptConfig()
    shading_cfg = ShadingConfig(
        albedo_probability=args.albedo,
        lambertian_probability=args.lambertian,
        textureless_probability=args.textureless,
        albedo_only_steps=0,
    )
    objects = list(toy_objects().values())
    captions: list[str] = []
    for obj in objects:
        # [front, side, back, overhead] per object; a multi-view prior's caption is the plain prompt
        captions += view_prompts(obj.prompt, view_cfg) if group == 1 else [obj.prompt]
    generator = torch.Generator().manual_seed(args.seed)
    images, alphas, caption_ids, object_ids, azimuths, elevations, modes, c2ws = ([] for _ in range(8))
    mode_names = ("albedo", "lambertian", "textureless")
    t0 = time.perf_counter()
    for oi, obj in enumerate(objects):
        views, cam_cfg = sample_cameras(
            args.views_per_object, args.resolution, args.overhead_fraction, args.preset, generator, group
        )
        vidx = view_index(views.azimuth_deg, views.elevation_deg, view_cfg)  # [N]
        for start in range(0, args.views_per_object, args.chunk):
            sl = slice(start, min(start + args.chunk, args.views_per_object))
            cams = views.cameras[sl]
            n = len(cams)
            backgrounds = smooth_backgrounds(n, args.resolution, generator)
            rgb = torch.empty(n, args.resolution, args.resolution, 3)
            alpha = torch.empty(n, args.resolution, args.resolution)
            # one shading draw per image, or per group of a multi-view prior (one SDS step draws one per
            # batch), then one render per mode
            group_draws = [
                sample_shading(shading_cfg, 10**9, cams.c2w[g : g + group, :3, 3], generator)
                for g in range(0, n, group)
            ]
            draws = [group_draws[i // group] for i in range(n)]
            for mode in mode_names:
                members = [i for i, d in enumerate(draws) if d.mode == mode]
                if not members:
                    continue
                sel = torch.tensor(members)
                lights = (
                    None
                    if mode == "albedo"
                    else torch.stack([draws[i].light_positions[i % group] for i in members])
                )
                out = render_views(
                    obj,
                    cams[sel],
                    mode=mode,
                    light_positions=lights,
                    ambient=shading_cfg.ambient,
                    background=backgrounds[sel],
                    supersample=args.supersample,
                )
                rgb[sel], alpha[sel] = out.rgb, out.alpha
            modes.extend(mode_names.index(d.mode) for d in draws)
            images.append((rgb.numpy() * 255.0 + 0.5).astype(np.uint8))
            alphas.append((alpha.numpy() * 255.0 + 0.5).astype(np.uint8))
        caption_ids.append(
            oi * len(view_cfg_names()) + vidx.numpy() if group == 1 else np.full(len(vidx), oi)
        )
        c2ws.append(views.cameras.c2w.numpy().astype(np.float32))
        object_ids.append(np.full(args.views_per_object, oi))
        azimuths.append(views.azimuth_deg.numpy())
        elevations.append(views.elevation_deg.numpy())
        print(f"{obj.prompt}: {args.views_per_object} views, {time.perf_counter() - t0:.0f} s", flush=True)
    meta = {
        "captions": captions,
        "objects": [o.prompt for o in objects],
        "resolution": args.resolution,
        "camera": {
            "distance": {"type": type(cam_cfg.distance).__name__, **dataclasses.asdict(cam_cfg.distance)},
            **{k: getattr(cam_cfg, k) for k in ("fov_range", "elevation_range")},
        },
        "overhead_fraction": args.overhead_fraction,
        "views_per_group": group,
        "shading": {"albedo": args.albedo, "lambertian": args.lambertian, "textureless": args.textureless},
        "supersample": args.supersample,
        "seed": args.seed,
        "render_s": round(time.perf_counter() - t0, 1),
        "command": " ".join(sys.argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        images=np.concatenate(images),
        alpha=np.concatenate(alphas),
        caption_ids=np.concatenate(caption_ids).astype(np.int64),
        object_ids=np.concatenate(object_ids).astype(np.int64),
        azimuth_deg=np.concatenate(azimuths).astype(np.float32),
        elevation_deg=np.concatenate(elevations).astype(np.float32),
        shading_mode=np.asarray(modes, dtype=np.int64),
        c2w=np.concatenate(c2ws),
        meta=np.asarray(json.dumps(meta)),
    )
    tmp.replace(args.out)
    print(f"wrote {args.out} ({sum(len(i) for i in images)} images, {meta['render_s']} s)")


def view_cfg_names() -> tuple[str, ...]:
    """The product's view names, in caption order per object."""
    from t23d.prompt.view import VIEW_NAMES

    return VIEW_NAMES


if __name__ == "__main__":
    main()
