"""What a user gets, measured against ground truth: an exported ``.glb`` rendered unlit at a capture's
unseen cameras (vs the photos and vs the true albedo) and its distance to the true surface.

Used by ``bench_reconstruct.py`` (both modes). Reads the capture's own files (Blender-synthetic
``transforms_test.json`` + PNGs), not t23d's loader, so the ground truth does not pass through the code
under test. Rendering is t23d's :func:`t23d.render.mesh.render_mesh` (unlit, ``2x2`` rays per pixel
as an engine's multisampling, or 1). Everything is compared on a white background: photos with alpha
are composited on white; photos without alpha (objects in a room) are cut out with the object mask
(the alpha of the ``_albedo`` images) and composited on white, so the surroundings never count.
Conventions: world +Z up (the glTF's Y-up is converted back), OpenGL cameras, sRGB in [0, 1].
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLDS = (0.01, 0.02)
"""Distance thresholds (world units; objects have radius <= 1) for precision / recall / F-score."""


def load_glb(glb: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """Vertices ``[V, 3]`` in the input's +Z-up frame, faces ``[F, 3]`` and the unlit appearance."""
    import trimesh

    from t23d.render.mesh import MeshAppearance

    mesh = trimesh.load(glb, force="mesh")
    v = np.asarray(mesh.vertices, dtype=np.float64)
    v_input = np.stack([v[:, 0], -v[:, 2], v[:, 1]], -1)  # glTF Y-up -> the input's Z-up frame
    material = getattr(mesh.visual, "material", None)
    texture = getattr(material, "baseColorTexture", None)
    if texture is not None and getattr(mesh.visual, "uv", None) is not None:
        look = MeshAppearance(
            uvs=np.asarray(mesh.visual.uv, dtype=np.float64), texture=np.asarray(texture.convert("RGB"))
        )
    else:
        colors = getattr(mesh.visual, "vertex_colors", None)
        look = MeshAppearance(vertex_colors=None if colors is None else np.asarray(colors)[:, :3])
    return v_input, np.asarray(mesh.faces), look


def _read_rgba(path: Path) -> np.ndarray:
    from PIL import Image

    img = np.asarray(Image.open(path)).astype(np.float64) / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.shape[-1] == 3:
        img = np.concatenate([img, np.ones(img.shape[:2] + (1,))], axis=-1)
    return img


def read_test_views(data_dir: Path) -> list[dict[str, Any]]:
    """The unseen views of a Blender-synthetic capture: camera, photo and (when present) true albedo,
    each ``[H, W, 3]`` composited on white (photos without alpha: cut out with the albedo's alpha)."""
    meta = json.loads((data_dir / "transforms_test.json").read_text())
    views = []
    for frame in meta["frames"]:
        photo = _read_rgba(data_dir / (frame["file_path"] + ".png"))
        albedo = None
        if "albedo_file_path" in frame and (data_dir / (frame["albedo_file_path"] + ".png")).is_file():
            albedo = _read_rgba(data_dir / (frame["albedo_file_path"] + ".png"))
        mask = photo[..., 3]
        if np.all(mask == 1.0) and albedo is not None:  # an unmasked photo: the object is the albedo's alpha
            mask = albedo[..., 3]
        h, w = photo.shape[:2]
        fx = 0.5 * w / math.tan(0.5 * float(meta["camera_angle_x"]))
        fy = 0.5 * h / math.tan(0.5 * float(meta["camera_angle_y"])) if "camera_angle_y" in meta else fx
        views.append(
            {
                "camera": (
                    np.asarray(frame["transform_matrix"], dtype=np.float64),
                    np.array([fx, fy, w / 2, h / 2]),
                    h,
                    w,
                ),
                "photo": photo[..., :3] * mask[..., None] + (1 - mask[..., None]),
                "albedo": None
                if albedo is None
                else albedo[..., :3] * albedo[..., 3:] + (1 - albedo[..., 3:]),
                "mask": mask,
            }
        )
    return views


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of ``a`` against ``b``, images in ``[0, 1]``; inf when equal."""
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def albedo_gain(preds: list[np.ndarray], truths: list[np.ndarray], masks: list[np.ndarray]) -> np.ndarray:
    """The per-channel gain ``[3]`` that best maps predicted albedos onto the true ones (least squares over
    the pixels where ``masks`` hold, all views together). Albedo and light share a scale the photos do not
    fix (``albedo * k`` under ``light / k`` renders the same photos), so albedo is compared after this fit
    as well as raw, as intrinsic-decomposition papers do (NeRFactor, InvRender, TensoIR)."""
    p = np.concatenate([x[m] for x, m in zip(preds, masks)]).reshape(-1, 3)
    a = np.concatenate([x[m] for x, m in zip(truths, masks)]).reshape(-1, 3)
    den = (p * p).sum(0)
    return np.where(den > 0, (p * a).sum(0) / np.maximum(den, 1e-12), 1.0)


def image_metrics(
    vertices: np.ndarray, faces: np.ndarray, look: Any, views: list[dict[str, Any]]
) -> dict[str, Any]:
    """Mean PSNR of the unlit asset vs the photos at 2x2 and 1 ray per pixel, vs the true albedo (2x2)
    where the capture has it (raw, and after the per-channel :func:`albedo_gain` fitted on the pixels
    both call object), and the silhouette IoU (2x2 coverage vs the photo's mask)."""
    from t23d.render.mesh import render_mesh

    out: dict[str, list[float]] = {
        "glb_psnr": [],
        "glb_psnr_1spp": [],
        "albedo_psnr": [],
        "silhouette_iou": [],
    }
    albedo_views: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # rgb, cov, albedo, mask
    for view in views:
        for ss, key in ((2, "glb_psnr"), (1, "glb_psnr_1spp")):
            rgb, coverage = render_mesh(vertices, faces, look, view["camera"], supersample=ss)
            pred = rgb + (1 - coverage[..., None])  # on white, like the photos
            out[key].append(psnr(pred, view["photo"]))
            if ss == 2:
                if view["albedo"] is not None:
                    out["albedo_psnr"].append(psnr(pred, view["albedo"]))
                    albedo_views.append((rgb, coverage, view["albedo"], view["mask"]))
                inter, union = (
                    np.minimum(coverage, view["mask"]).sum(),
                    np.maximum(coverage, view["mask"]).sum(),
                )
                out["silhouette_iou"].append(float(inter / union) if union > 0 else 1.0)
    result: dict[str, Any] = {k: (float(np.mean(v)) if v else None) for k, v in out.items()}
    result |= {"albedo_psnr_aligned": None, "albedo_gain": None, "num_views": len(views)}
    if albedo_views:
        rgbs, covs, truths, masks = zip(*albedo_views)
        inside = [(c > 0.99) & (m > 0.99) for c, m in zip(covs, masks)]  # pixels both call object
        gain = albedo_gain(list(rgbs), list(truths), inside)
        result["albedo_gain"] = [round(float(g), 4) for g in gain]
        result["albedo_psnr_aligned"] = float(
            np.mean([psnr(np.clip(r * gain, 0, 1) + (1 - c[..., None]), a) for r, c, a, _ in albedo_views])
        )
    return result


def sample_points(path: Path, count: int = 100_000, seed: int = 0) -> np.ndarray:
    """``[count, 3]`` points of a ground-truth file: area-uniform samples of a mesh PLY, or the points
    of a point-cloud PLY (all of them when it holds ``count`` or fewer)."""
    import trimesh

    geom = trimesh.load(path, process=False)
    if isinstance(geom, trimesh.Trimesh) and len(geom.faces):
        return np.asarray(trimesh.sample.sample_surface(geom, count, seed=seed)[0])
    pts = np.asarray(geom.vertices)
    if len(pts) > count:
        pts = pts[np.random.default_rng(seed).choice(len(pts), count, replace=False)]
    return pts


def surface_metrics(
    vertices: np.ndarray, faces: np.ndarray, true_points: np.ndarray, count: int = 100_000, seed: int = 1
) -> dict[str, float]:
    """Chamfer-L1 (mean of accuracy, asset -> truth, and completeness, truth -> asset; ``count``
    area-uniform samples of the asset), and precision / recall / F-score at each of ``THRESHOLDS``."""
    import trimesh
    from scipy.spatial import cKDTree

    pred = np.asarray(
        trimesh.sample.sample_surface(trimesh.Trimesh(vertices, faces, process=False), count, seed=seed)[0]
    )
    d_acc = cKDTree(true_points).query(pred)[0]
    d_comp = cKDTree(pred).query(true_points)[0]
    out = {
        "chamfer_l1": float(0.5 * (d_acc.mean() + d_comp.mean())),
        "accuracy": float(d_acc.mean()),
        "completeness": float(d_comp.mean()),
    }
    for t in THRESHOLDS:
        p, r = float((d_acc < t).mean()), float((d_comp < t).mean())
        out[f"precision@{t}"], out[f"recall@{t}"] = p, r
        out[f"fscore@{t}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return out


def glb_metrics(glb: Path, data_dir: Path, true_points: np.ndarray) -> dict[str, Any]:
    """Everything above for one exported asset and one capture."""
    vertices, faces, look = load_glb(glb)
    views = read_test_views(data_dir)
    return {
        **image_metrics(vertices, faces, look, views),
        **surface_metrics(vertices, faces, true_points),
        "faces": int(len(faces)),
    }
