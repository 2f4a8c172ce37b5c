"""Issue 12 item 0, end to end: raw photos (no poses: SfM poses them) of a textured object, in plain and
in busy surroundings -> ``t23d reconstruct`` -> an asset of the object alone.

Measured as a user would judge it: the exported asset rendered at every registered photo's camera (SfM's
own poses and intrinsics, in the asset's frame) covers the object's true mask in that photo (silhouette
IoU), and no part of the asset lies away from the object (the surroundings: a textured room and a
printed sheet on the floor under the object). The SfM frame is tied to the truth by the similarity that
best maps the registered cameras' centres onto the true ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from t23d.data.synthetic import SyntheticScene
from t23d.data.synthetic_writers import write_raw_photos

REPO = Path(__file__).resolve().parents[2]
SURROUNDINGS = {
    "plain": {"background": "plain"},  # a grey studio backdrop: nothing but the object has features
    "busy": {"background": "textured", "ground": "printed"},  # a textured room, a newspaper on the floor
}
SURROUNDINGS["plain, focal length known"] = SURROUNDINGS["plain"]  # as EXIF or the user gives it


def silhouette_ious(run_dir: Path, masks: np.ndarray) -> list[float]:
    """IoU of the asset's coverage (2x2 rays per pixel) with each registered photo's true object mask."""
    sys.path.insert(0, str(REPO))
    from benchmarks.asset_metrics import load_glb
    from t23d.render.mesh import render_mesh

    scene = json.loads((run_dir / "scene.json").read_text())
    vertices, faces, look = load_glb(next((run_dir / "export").glob("*.glb")))
    w = np.asarray(scene["world_from_normalised"])
    c2w = np.asarray(scene["c2w"])
    c2w[:, :3, 3] = c2w[:, :3, 3] * w[0, 0] + w[:3, 3]  # the input (SfM) frame, where the asset is
    size = masks.shape[1]
    ious = []
    for i, path in enumerate(scene["image_paths"]):
        mask = masks[int(Path(path).stem.split("_")[1])]
        intrinsics = np.asarray(scene["intrinsics"][i]) * (size / scene["width"])  # at the photo's size
        _, cover = render_mesh(vertices, faces, look, (c2w[i], intrinsics, size, size), supersample=2)
        ious.append(float(np.minimum(cover, mask).sum() / np.maximum(cover, mask).sum()))
    return ious


def asset_in_true_frame(run_dir: Path, true_c2w: np.ndarray, count: int = 20000) -> np.ndarray:
    """Surface samples of the asset mapped into the scene's true frame (similarity fitted on the cameras)."""
    import trimesh

    from t23d.data.normalise import umeyama

    sys.path.insert(0, str(REPO))
    from benchmarks.asset_metrics import load_glb

    scene = json.loads((run_dir / "scene.json").read_text())
    w = np.asarray(scene["world_from_normalised"])
    centres = np.asarray(scene["c2w"])[:, :3, 3] * w[0, 0] + w[:3, 3]
    index = [int(Path(p).stem.split("_")[1]) for p in scene["image_paths"]]
    s, rot, t = umeyama(centres, true_c2w[index, :3, 3])
    vertices, faces, _ = load_glb(next((run_dir / "export").glob("*.glb")))
    pts = np.asarray(trimesh.sample.sample_surface(trimesh.Trimesh(vertices, faces), count, seed=0)[0])
    return s * pts @ rot.T + t


@pytest.mark.slow  # SfM + 400 training steps + export: 12-23 min each on the shared 2 cores (RESULTS.md)
@pytest.mark.parametrize(
    "surroundings",
    [
        "busy",
        "plain, focal length known",
        pytest.param(
            "plain",
            marks=pytest.mark.xfail(
                strict=True,
                reason="issue 12 bar not met in plain surroundings when nothing gives the focal length: "
                "silhouette IoU 0.939-0.947; with features on the object only, bundle adjustment settles on a "
                "focal length ~5 % short (5.5 % with no distortion parameter), and the asset comes out "
                "~0.03 too large all round (benchmarks/RESULTS.md, issue 12 item 0)",
            ),
        ),
    ],
)
def test_raw_photos_give_an_asset_of_the_object_alone(surroundings, tmp_path):
    pytest.importorskip("pycolmap")
    scene = SyntheticScene(**SURROUNDINGS[surroundings])
    photos = tmp_path / "photos"
    capture = write_raw_photos(scene, photos, n_views=24, resolution=128)
    args = ["reconstruct", str(photos), "--preset", "fast", "--steps", "400", "--downscale", "1"]
    args += ["--resolution", "96", "--faces", "5000", "--texture-size", "256", "--device", "cpu"]
    if surroundings.endswith("focal length known"):
        known = tmp_path / "focal.yaml"
        known.write_text(f"data:\n  sfm:\n    focal_length_px: {capture.camera.fx}\n")
        args += ["--config", str(known)]
    res = subprocess.run(
        [sys.executable, "-m", "t23d.cli.main", *args, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=3600,
        env=dict(os.environ),
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (run_dir,) = (tmp_path / "out").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["registration"]["num_registered"] == 24
    # the floor is found under the object in the busy scene, and nothing is taken for one in the plain one
    assert (metrics["support_plane"] is not None) == (surroundings == "busy"), metrics["support_plane"]
    # over the floor the region was checked against the learnt foot (export.json says what it meshed in)
    region = json.loads((run_dir / "export" / "export.json").read_text())["region"]
    assert (region is not None) == (surroundings == "busy"), region
    if region is not None:  # and the cut's height was read from the colours below the margin
        assert region["cut"]["slices"] and region["cut"]["height"] <= region["cut"]["margin"], region["cut"]
        # a box stands flat on its sheet: where the cut came down, its base goes on to the floor (auto)
        assert region["base"]["base"] == ("extend" if region["cut"]["lowered"] else "cut"), region["base"]
    assert metrics["appearance"]["local_codes"]["size"] == 32  # unmasked photos: local light codes (auto)
    assert metrics["ray_sampling"]["mode"] == "error"  # and half the rays drawn by the error map (auto)
    if surroundings.endswith("focal length known"):  # bundle adjustment's drift is not taken for the truth
        assert metrics["registration"]["focal_length_px"]["choice"]["kept"] == "known"

    ious = silhouette_ious(run_dir, capture.object_masks)
    pts = asset_in_true_frame(run_dir, capture.c2w)
    dist = np.abs(scene.signed_distance(pts))
    print(
        f"{surroundings}: IoU mean {np.mean(ious):.4f} min {np.min(ious):.4f}; asset to true surface: "
        f"mean {dist.mean():.4f}, 99th pct {np.percentile(dist, 99):.4f}, max {dist.max():.4f}; "
        f"held-out PSNR {metrics['psnr']:.2f} dB; cut {region and region['cut']}"
    )
    assert np.mean(ious) >= 0.95 and np.min(ious) >= 0.9, ious
    # no surroundings in the asset: every part of it lies near the object (the room is 8 units away, the
    # floor's sheet reaches 1.6 from the centre; the never-seen bottom face may bulge: plain 0.15)
    assert dist.max() < 0.25, dist.max()
    if surroundings == "busy":  # nothing under the floor, and only a fillet of it around the object's foot
        assert pts[:, 2].min() > scene.ground_height() - 0.02
        foot = pts[pts[:, 2] < scene.ground_height() + 0.05]
        # (the cut comes down the box's sides, where the colours are mostly the box's, to 0.025-0.03 above the
        # floor: the fillet kept there reached 0.10-0.16 beyond the side in the runs measured, against
        # 0.08-0.1 with the cut at 0.05; the floor's sheet reaches 1.15 beyond it)
        assert np.abs(foot[:, :2] - scene.box_center[:2]).max(initial=0.0) < scene.box_half + 0.2
