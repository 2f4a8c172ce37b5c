"""``t23d reconstruct`` end to end on small synthetic scenes of known geometry, in each input format.

Thresholds are set from measured runs with margin (see the note on each); they check that training,
evaluation and export work together and that the asset lies in the input's world frame.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers.asset import asset_points_in_input_frame, chamfer_l1

from t23d.cli.common import schedules_for_steps
from t23d.data.synthetic import SyntheticScene
from t23d.data.synthetic_writers import write_blender, write_colmap, write_nerfstudio
from t23d.reconstruct.config import reconstruct_preset
from t23d.reconstruct.fewview import FewViewConfig
from t23d.reconstruct.run import load_reconstruct_state, run_reconstruct


def fast_config(input_path: Path, steps: int = 300, geometry: str = "density", **changes):
    cfg = schedules_for_steps(reconstruct_preset("fast", geometry), steps)  # as --steps does
    export = dataclasses.replace(
        cfg.export, resolution=96, faces=5000, texture_size=256, fidelity_resolution=64
    )
    return dataclasses.replace(
        cfg, input=str(input_path), steps=steps, device="cpu", export=export, **changes
    )


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    # the object is off-centre, so a frame mix-up would show in the Chamfer distance
    return SyntheticScene(box_center=(0.2, -0.1, -0.15), sphere_center=(0.2, -0.1, 0.55))


@pytest.fixture(scope="module")
def blender_run(scene, tmp_path_factory):
    data = tmp_path_factory.mktemp("blender")
    write_blender(scene, data, n_train=40, n_test=4, resolution=64)
    return run_reconstruct(fast_config(data), tmp_path_factory.mktemp("out"))


@pytest.mark.slow  # 47 s; SDF photo runs stay covered by default by the Blender-capture quality test
def test_sdf_reconstruction_of_a_plain_coloured_object_is_a_clean_surface(tmp_path):
    """The case density fields fail: one flat colour per part, lit (shading is the only cue on the
    faces). SDF geometry gives one watertight surface near the truth, in the input's frame."""
    import trimesh

    scene = SyntheticScene(
        box_center=(0.2, -0.1, -0.15),
        sphere_center=(0.2, -0.1, 0.55),
        albedo_kind="plain",
        lighting="lambert",
    )
    data = tmp_path / "plain"
    write_blender(scene, data, n_train=40, n_test=4, resolution=64, train_elevation_deg=(-60.0, 80.0))
    cfg = fast_config(data, steps=400, geometry="sdf")
    run = run_reconstruct(cfg, tmp_path / "out")
    glb = next((run / "export").glob("*.glb"))
    mesh = trimesh.load(glb, force="mesh")
    report = json.loads((run / "export" / "export.json").read_text())
    assert report["threshold"] == 0.0
    cd = chamfer_l1(asset_points_in_input_frame(glb), scene.sample_surface(20000, seed=1))
    assert cd < 0.04, cd  # 0.033 measured; density fields: 0.075 on such an object (RESULTS.md, issue 8)
    assert trimesh.Trimesh(mesh.vertices, mesh.faces).split(only_watertight=False).__len__() == 1


def test_blender_reconstruction_quality_and_world_frame(blender_run, scene):
    from gltf_validate import validate_gltf

    metrics = json.loads((blender_run / "metrics.json").read_text())
    assert metrics["num_test_views"] == 4
    # measured ~23.5 dB after 300 fast steps at 64 px; the untrained field gives ~11 dB
    assert metrics["psnr"] >= 21.0, metrics["psnr"]
    info = json.loads((blender_run / "run.json").read_text())
    assert info["status"] == "completed" and info["source_format"] == "blender"
    glb = next((blender_run / "export").glob("*.glb"))
    assert validate_gltf(glb)["issues"]["numErrors"] == 0
    # the asset is in the input's world frame: close to the true surface there
    cd = chamfer_l1(asset_points_in_input_frame(glb), scene.sample_surface(20000, seed=1))
    # measured 0.043 (300 fast steps, 96^3 grid); a frame mix-up (the object is 0.2 off-centre) gives > 0.15
    assert cd < 0.06, cd
    fidelity = info["export"]["fidelity"]
    assert fidelity["iou"] >= 0.95


def test_reconstruct_resume_is_bit_exact(scene, tmp_path):
    data = tmp_path / "data"
    write_blender(scene, data, n_train=8, n_test=1, resolution=32)
    # few-view annealing is resolved from the run's steps (a 3-step run anneals faster than a 6-step one),
    # so it is off here, and so is the learning-rate decay (--steps scales where it starts): the 3-step
    # run must be the first half of the 6-step run
    kw = {
        "export_at_end": False,
        "checkpoint_every": 3,
        "few_view": FewViewConfig(mode="off"),
        "lr_decay_start": 1000,
    }
    full = run_reconstruct(fast_config(data, steps=6, **kw), tmp_path / "a")
    half = run_reconstruct(fast_config(data, steps=3, **kw), tmp_path / "b")
    run_reconstruct(fast_config(data, steps=6, **kw), resume=half)
    _, s1 = load_reconstruct_state(full, torch.device("cpu"))
    _, s2 = load_reconstruct_state(half, torch.device("cpu"))
    for (k, a), (_, b) in zip(s1.field.state_dict().items(), s2.field.state_dict().items()):
        assert torch.equal(a, b), k


def test_a_texture_projected_from_the_photos(blender_run, tmp_path):
    """``texture_source: photos`` re-exports the run with its training photos, loaded again from the
    input folder and projected onto the mesh. On this small, blurry run (300 steps at 64 px) the asset
    matches the unseen photos as well as the field's bake does (22.1 vs 22.4 dB measured; the benchmark
    scenes in RESULTS.md are the comparison that counts); an input folder that has gone is refused."""
    from benchmarks.asset_metrics import image_metrics, load_glb, read_test_views
    from t23d.common.errors import T23dError
    from t23d.reconstruct.run import export_reconstruct_run

    cfg, state = load_reconstruct_state(blender_run, torch.device("cpu"))
    views = read_test_views(Path(cfg.input))
    psnr, reports = {}, {}
    for source in ("field", "photos"):
        export_cfg = dataclasses.replace(cfg.export, texture_source=source)
        reports[source] = export_reconstruct_run(blender_run, cfg, state, export_cfg, tmp_path / source)
        psnr[source] = image_metrics(*load_glb(Path(reports[source]["asset_path"])), views)["glb_psnr"]
    assert reports["field"]["photo_texture"] is None
    photo = reports["photos"]["photo_texture"]
    # 55 % measured: the box's bottom is never photographed and this mesh is rough
    assert photo["photos"] == 40 and photo["covered"] > 0.4, photo
    assert abs(psnr["photos"] - psnr["field"]) < 1.0, psnr
    moved = dataclasses.replace(cfg, input=str(tmp_path / "gone"))
    export_cfg = dataclasses.replace(cfg.export, texture_source="photos")
    with pytest.raises(T23dError, match="--texture-source field"):
        export_reconstruct_run(blender_run, moved, state, export_cfg, tmp_path / "moved")
    assert not (tmp_path / "moved").exists()


@pytest.mark.slow  # ~32 s; the format itself is covered by tests/data, quality by the Blender-format run
def test_nerfstudio_format_with_masks(scene, tmp_path):
    data = tmp_path / "ns"
    write_nerfstudio(scene, data, n_views=36, resolution=64, with_masks=True)
    run_dir = run_reconstruct(fast_config(data, steps=200), tmp_path / "out")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["source_format"] == "nerfstudio"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_test_views"] >= 4  # every 8th image held out
    assert metrics["psnr"] >= 19.0, metrics["psnr"]  # measured 21.6 dB after 200 fast steps
    glb = next((run_dir / "export").glob("*.glb"))
    cd = chamfer_l1(asset_points_in_input_frame(glb), scene.sample_surface(20000, seed=1))
    assert cd < 0.08, cd


@pytest.mark.slow  # ~105 s: the outer field of unmasked photos; the raw-photo CLI test covers that path by default
def test_colmap_format_without_masks(scene, tmp_path):
    """COLMAP photos have no alpha: the object sits in a textured room (an environment sphere of radius 8
    around it). The default background for unmasked photos, the contracted outer field, must hold the
    room (with its parallax) so the field's box keeps the object: a direction-only SH environment
    reached 15.9 dB here after 500 steps, its fog filling the box."""
    data = tmp_path / "colmap"
    write_colmap(scene, data, n_views=48, resolution=96)
    run_dir = run_reconstruct(fast_config(data, steps=400), tmp_path / "out")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["source_format"] == "colmap"
    assert (
        yaml.safe_load((run_dir / "config.yaml").read_text())["background"]["type"] == "ContractedBackground"
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["psnr"] >= 17.5, metrics["psnr"]  # measured 19.2 dB
    glb = next((run_dir / "export").glob("*.glb"))
    pts = asset_points_in_input_frame(glb)
    true = scene.sample_surface(20000, seed=1)
    cd = chamfer_l1(pts, true)
    # measured 0.061 (a short run: the object is still semi-transparent, its mesh spongy near the top);
    # the object is 0.2 off-centre, so a frame mix-up gives > 0.15
    assert cd < 0.09, cd


@pytest.fixture(scope="module")
def on_a_table(tmp_path_factory):
    """Posed photos (nerfstudio) without masks or points of the object on a printed sheet in a room."""
    scene = SyntheticScene(background="textured", ground="printed")
    data = tmp_path_factory.mktemp("posed")
    write_nerfstudio(scene, data, n_views=24, resolution=96)
    return scene, data


@pytest.mark.slow  # 17 s; by default tests/data/test_triangulate.py covers reusing a saved model
def test_posed_photos_without_masks_keep_their_triangulated_points_on_resume(
    on_a_table, tmp_path, monkeypatch
):
    """Issue 12 item 0 for posed captures: the loader triangulates points with the given poses (no masks,
    no points); the run records how, finds the sheet the object stands on, and saves the points so that a
    resume reads them instead of matching again."""
    pytest.importorskip("pycolmap")
    import t23d.data.triangulate

    _, data = on_a_table
    kw = {"export_at_end": False, "checkpoint_every": 2, "ground": "auto"}
    run_dir = run_reconstruct(fast_config(data, steps=2, geometry="sdf", **kw), tmp_path / "out")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["triangulation"]["num_points"] >= 200 and metrics["support_plane"] is not None
    # with ground: auto the plane is part of the SDF's geometry, recorded in the resolved config
    plane = metrics["support_plane"]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["field"]["ground_plane"]
    assert saved == pytest.approx([*plane["normal"], plane["offset"]]) and metrics["ground_plane"] == saved
    assert (run_dir / "sfm" / "points3D.bin").is_file()
    scene_before = json.loads((run_dir / "scene.json").read_text())

    def no_matching(*args, **kwargs):
        raise AssertionError("triangulated again on resume")

    monkeypatch.setattr(t23d.data.triangulate, "triangulate_posed", no_matching)
    run_reconstruct(fast_config(data, steps=4, geometry="sdf", **kw), resume=run_dir)
    assert json.loads((run_dir / "run.json").read_text())["completed_steps"] == 4
    # the saved points give the run's own object region and plane again
    from t23d.data import load_dataset

    again = load_dataset(data, fast_config(data).data, run_dir / "sfm")
    assert again.aabb.tolist() == scene_before["aabb"]
    assert again.support_plane.to_dict() == scene_before["support_plane"]


@pytest.mark.slow  # ~50-70 s: 100 steps on unmasked photos (the outer field) and an export
def test_posed_photos_without_masks_are_cut_above_the_table_they_stand_on(on_a_table, tmp_path):
    """The asset of a posed capture without masks leaves out the sheet the object stands on (without
    triangulated points it kept the sheet: the object region was the whole field of view)."""
    pytest.importorskip("pycolmap")
    scene, data = on_a_table
    run_dir = run_reconstruct(fast_config(data, steps=100), tmp_path / "out")
    pts = asset_points_in_input_frame(next((run_dir / "export").glob("*.glb")))
    # nothing of the sheet (a 1.6-unit disc) nor under it; the object is 0.9 wide
    assert pts[:, 2].min() > scene.ground_height(), pts[:, 2].min()
    assert np.abs(pts[:, :2]).max() < 0.8, np.abs(pts[:, :2]).max()


@pytest.mark.slow  # 23 s; by default test_raw_photos_two_command_path covers the raw-photo path and test_reconstruct_resume_is_bit_exact resuming
def test_resume_on_raw_photos_reuses_the_saved_sfm_poses(tmp_path, monkeypatch):
    """Issue 9 item 3: resuming a run on raw photos ran SfM again, whose poses can differ from the
    checkpoint's. The run keeps its SfM model; a resume poses the photos by it, bit for bit."""
    pytest.importorskip("pycolmap")
    import t23d.data.sfm
    from t23d.data import load_dataset
    from t23d.data.synthetic_writers import write_raw_photos

    photos = tmp_path / "photos"
    write_raw_photos(SyntheticScene(), photos, n_views=16, resolution=96)
    kw = {"export_at_end": False, "checkpoint_every": 2}
    run_dir = run_reconstruct(fast_config(photos, steps=2, **kw), tmp_path / "out")
    assert (run_dir / "sfm" / "images.bin").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["registration"]["num_registered"] >= 15 and metrics["registration"]["num_images"] == 16
    assert metrics["registration"]["mean_reprojection_error_px"] < 1.0

    def no_sfm(*args, **kwargs):
        raise AssertionError("SfM ran again on resume")

    monkeypatch.setattr(t23d.data.sfm, "run_sfm", no_sfm)
    run_reconstruct(fast_config(photos, steps=4, **kw), resume=run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["completed_steps"] == 4
    scene = json.loads((run_dir / "scene.json").read_text())
    again = load_dataset(photos, fast_config(photos).data, run_dir / "sfm")
    assert again.c2w.tolist() == scene["c2w"] and again.intrinsics.tolist() == scene["intrinsics"]
    assert [str(p) for p in again.image_paths] == scene["image_paths"]
    assert np.asarray(again.world_from_normalised).tolist() == scene["world_from_normalised"]
