"""export_asset end to end on analytic fields: files, validator, frames, orientation, errors."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from export_fields import AABB, RADIUS, RES, constant_color, octant_color, sphere_density
from gltf_validate import (
    GlbReader,
    error_messages,
    load_with_blender,
    load_with_threejs,
    needs_blender,
    validate_gltf,
)

from t23d.common.errors import ConfigError, T23dError
from t23d.export import ExportConfig, export_asset, slugify
from t23d.export.transform import ZUP_TO_YUP, export_transform

FAST = dict(resolution=RES, faces=3000, texture_size=256, fidelity_views=0, preview_size=64)


def _export(tmp_path, name="ball", color_fn=octant_color, density_fn=sphere_density, **kw):
    cfg = ExportConfig(**{**FAST, **kw})
    return export_asset(density_fn, color_fn, AABB, tmp_path, name, cfg)


@pytest.fixture(scope="module")
def glb(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("glb"))


@pytest.mark.parametrize("fmt", ["glb", "gltf"])
def test_gltf_outputs_pass_khronos_validator_and_reload(tmp_path, fmt, glb):
    import trimesh

    report = glb if fmt == "glb" else _export(tmp_path, format="gltf")
    out = report.asset_path.parent
    expected = {"glb": {"ball.glb"}, "gltf": {"ball.gltf", "ball.bin", "ball.png"}}[fmt]
    assert expected | {"ball_preview.png", "export.json"} == {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    result = validate_gltf(report.asset_path)
    assert result["issues"]["numErrors"] == 0, error_messages(result)
    assert result["issues"]["numWarnings"] == 0
    mesh = trimesh.load(report.asset_path, force="mesh")
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert mesh.visual.uv is not None and mesh.visual.uv.shape == (len(mesh.vertices), 2)
    assert mesh.visual.uv.min() >= 0 and mesh.visual.uv.max() <= 1
    assert mesh.visual.material.baseColorTexture.size == (256, 256)
    assert len(mesh.faces) == report.num_faces == 3000


def test_threejs_gltfloader_imports_the_asset_textured(glb):
    """three.js's own GLTFLoader (Node; the PNG's size is read from its header, there is no decoder)."""
    out = load_with_threejs(glb.asset_path)
    assert out["scene"] == "ball"
    (mesh,) = out["meshes"]
    assert mesh["attributes"] == ["normal", "position", "uv"]
    assert mesh["vertices"] == glb.num_vertices and mesh["indices"] == 3 * glb.num_faces
    assert mesh["material"] == "MeshStandardMaterial" and mesh["metalness"] == 0 and mesh["roughness"] == 1
    assert mesh["map"] == {
        "width": 256,
        "height": 256,
        "bytes": mesh["map"]["bytes"],
        "colorSpace": "srgb",
        "flipY": False,
    }
    assert mesh["map"]["bytes"] > 100
    np.testing.assert_allclose(mesh["bbox"], [glb.bbox_min, glb.bbox_max], atol=1e-5)


@needs_blender
def test_blender_imports_the_asset_textured_in_its_z_up_frame(glb):
    out = load_with_blender(glb.asset_path)
    assert out["result"] == ["FINISHED"]
    (mesh,) = out["meshes"]
    assert mesh["polygons"] == glb.num_faces and len(mesh["uv_layers"]) == 1
    (mat,) = mesh["materials"]
    assert mat["metallic"] == 0 and mat["roughness"] == 1
    assert mat["base_color_image"] == {"size": [256, 256], "colorspace": "sRGB"}
    # Blender is Z-up like t23d's field: glTF (x, y, z) comes back as (x, -z, y)
    lo, hi = np.array(glb.bbox_min), np.array(glb.bbox_max)
    expected = [[lo[0], -hi[2], lo[1]], [hi[0], -lo[2], hi[1]]]
    np.testing.assert_allclose(mesh["bbox"], expected, atol=1e-5)


def test_gltf_json_has_names_material_and_generator(glb):
    import pygltflib

    g = pygltflib.GLTF2().load(str(glb.asset_path))
    assert g.asset.generator.startswith("t23d ") and g.asset.version == "2.0"
    assert g.meshes[0].name == "ball" and g.nodes[0].name == "ball" and g.scenes[0].name == "ball"
    pbr = g.materials[0].pbrMetallicRoughness
    assert pbr.metallicFactor == 0 and pbr.roughnessFactor == 1 and pbr.baseColorTexture.index == 0
    attrs = g.meshes[0].primitives[0].attributes
    assert attrs.POSITION is not None and attrs.NORMAL is not None and attrs.TEXCOORD_0 is not None


def _gltf_arrays(path):
    """Raw POSITION, NORMAL, TEXCOORD_0, indices and the decoded PNG of a GLB, with no library conventions."""
    glb = GlbReader(path)
    attrs = glb.primitive.attributes
    return (
        glb.accessor(attrs.POSITION, 3, np.float32),
        glb.accessor(attrs.NORMAL, 3, np.float32),
        glb.accessor(attrs.TEXCOORD_0, 2, np.float32),
        glb.faces(),
        glb.image_rgb(0),
    )


def test_colours_land_on_the_right_sides_in_y_up(glb):
    """Field: R = +x, G = +z (up), B = +y. glTF (Y up): R = +X, G = +Y, B = -Z. UV origin top-left."""
    pos, nrm, uv, faces, img = _gltf_arrays(glb.asset_path)
    s = img.shape[0]
    # glTF TEXCOORD_0: (0, 0) is the top-left of the image, so row = t * S (no flip)
    col = img[np.clip((uv[:, 1] * s).astype(int), 0, s - 1), np.clip((uv[:, 0] * s).astype(int), 0, s - 1)]
    col = col.astype(float) / 255
    sure = 0.1
    assert np.all(col[pos[:, 0] > sure, 0] > 0.9) and np.all(col[pos[:, 0] < -sure, 0] < 0.1)
    assert np.all(col[pos[:, 1] > sure, 1] > 0.9) and np.all(col[pos[:, 1] < -sure, 1] < 0.1)
    assert np.all(col[pos[:, 2] < -sure, 2] > 0.9) and np.all(col[pos[:, 2] > sure, 2] < 0.1)
    # trimesh's own texture sampling agrees
    import trimesh

    tm = trimesh.load(glb.asset_path, force="mesh")
    vc = tm.visual.to_color().vertex_colors[:, :3].astype(float) / 255
    assert np.all(vc[tm.vertices[:, 1] > sure, 1] > 0.9) and np.all(vc[tm.vertices[:, 2] < -sure, 2] > 0.9)
    # normals are unit and point outward; faces are counter-clockwise from outside
    assert np.allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-5)
    assert np.all(np.sum(nrm * pos, axis=1) > 0)
    fn = np.cross(pos[faces[:, 1]] - pos[faces[:, 0]], pos[faces[:, 2]] - pos[faces[:, 0]])
    assert np.all(np.sum(fn * pos[faces].mean(axis=1), axis=1) > 0)


def test_mesh_is_closed_sphere_after_welding_seams(glb):
    import trimesh

    m = trimesh.load(glb.asset_path, force="mesh", process=False)
    welded = trimesh.Trimesh(m.vertices, m.faces, process=True)  # merge the UV-seam duplicates
    assert welded.is_watertight
    assert welded.area == pytest.approx(4 * math.pi * RADIUS**2, rel=0.02)
    assert np.allclose(m.bounds.mean(axis=0), 0, atol=1e-6)  # origin="center"


def test_export_json_report(glb):
    doc = json.loads(glb.report_path.read_text())
    assert doc["num_faces"] == 3000 and doc["threshold"] == pytest.approx(math.log(2) * RES / 2)
    for stage in ("extract", "unwrap", "bake", "encode", "preview", "write", "total"):
        assert stage in doc["timings"]
    assert doc["config"]["format"] == "glb" and doc["fidelity"] is None
    assert doc["files"][-1].endswith("export.json")


def test_height_and_origin_bottom(tmp_path):
    r = _export(tmp_path, height=2.0, origin="bottom", format="glb")
    import trimesh

    m = trimesh.load(r.asset_path, force="mesh")
    lo, hi = m.bounds
    assert hi[1] - lo[1] == pytest.approx(2.0, rel=1e-5)
    assert lo[1] == pytest.approx(0.0, abs=1e-6)
    assert (lo[0] + hi[0]) / 2 == pytest.approx(0, abs=1e-6) and (lo[2] + hi[2]) / 2 == pytest.approx(
        0, abs=1e-6
    )
    assert hi[0] - lo[0] == pytest.approx(2.0, rel=0.02)  # uniform scale: still a sphere


def test_world_transform_round_trip(tmp_path):
    """Field sphere at (0.2, 0, 0); world = rotate 90 deg about +Z, then translate (1, 2, 3).

    World centre = R (0.2, 0, 0) + t = (1, 2.2, 3) (Z up); in glTF (x, z, -y) = (1, 3, -2.2).
    """
    world = np.eye(4)
    world[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    world[:3, 3] = [1, 2, 3]

    def dens(p):
        return sphere_density(p, center=(0.2, 0.0, 0.0))

    r = export_asset(
        dens,
        octant_color,
        AABB,
        tmp_path,
        "moved",
        ExportConfig(**FAST, origin="world"),
        world_transform=world,
    )
    pos, _, _, _, _ = _gltf_arrays(r.asset_path)
    centre = (pos.min(axis=0) + pos.max(axis=0)) / 2
    assert np.allclose(centre, [1.0, 3.0, -2.2], atol=0.01)
    assert np.allclose(pos.max(axis=0) - pos.min(axis=0), 2 * RADIUS, atol=0.02)
    m = np.array(r.transform)
    assert np.allclose(m, ZUP_TO_YUP @ world)
    # +x in the field (red) is world +y after the rotation, i.e. glTF -Z
    _, _, uv, _, img = _gltf_arrays(r.asset_path)
    s = img.shape[0]
    col = img[np.clip((uv[:, 1] * s).astype(int), 0, s - 1), np.clip((uv[:, 0] * s).astype(int), 0, s - 1)]
    far_minus_z = pos[:, 2] < centre[2] - 0.3
    assert far_minus_z.any() and np.all(col[far_minus_z, 0] > 200)


def test_mirroring_world_transform_keeps_outward_winding():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    m = export_transform(v, np.diag([-1.0, 1.0, 1.0, 1.0]), "world", None)
    from t23d.export.transform import mirrors

    assert mirrors(m) and np.allclose(m[:3, :3], ZUP_TO_YUP[:3, :3] @ np.diag([-1.0, 1, 1]))


def test_obj_and_ply_reload(tmp_path):
    import trimesh

    r = _export(tmp_path / "obj", format="obj", color_fn=constant_color)
    assert {p.name for p in r.asset_path.parent.iterdir()} == {
        "ball.obj", "ball.mtl", "ball.png", "ball_preview.png", "export.json"
    }  # fmt: skip
    m = trimesh.load(r.asset_path, force="mesh")
    assert m.visual.uv is not None and m.visual.material.image is not None
    assert np.allclose(
        np.asarray(m.visual.material.image.convert("RGB")), np.round(np.array([0.8, 0.4, 0.1]) * 255)
    )
    r = _export(tmp_path / "ply", format="ply", color_fn=octant_color)
    m = trimesh.load(r.asset_path, force="mesh")
    vc = m.visual.vertex_colors[:, :3]
    assert np.all(vc[m.vertices[:, 1] > 0.1, 1] == 255) and np.all(vc[m.vertices[:, 0] < -0.1, 0] == 0)
    assert r.texture_size is None and len(m.faces) == 3000


def test_no_surface_writes_nothing(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(T23dError, match=r"no surface.*try threshold="):
        export_asset(lambda p: 0.1 * sphere_density(p), octant_color, AABB, out, "x", ExportConfig(**FAST))
    assert not out.exists()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"format": "fbx"}, r"format: unknown export format 'fbx'; accepted: glb, gltf, obj, ply"),
        ({"texture_size": 1000}, r"texture_size must be a power of two.*got 1000"),
        ({"origin": "top"}, r"origin: invalid value 'top'"),
        ({"height": -1.0}, r"height: invalid value -1.0"),
        ({"texture_source": "photos"}, r"this export has none .* use texture_source 'field'"),
        (
            {"texture_source": "photos", "texture": "albedo"},
            r"an albedo texture comes from the run's shading",
        ),
        ({"texture_source": "web"}, r"texture_source: invalid value 'web'"),
        ({"photo_top_k": 0}, r"photo_top_k: invalid value 0"),
    ],
)
def test_bad_config_raises_before_any_work(tmp_path, kw, match):
    calls = []

    def dens(p):
        calls.append(1)
        return sphere_density(p)

    with pytest.raises(ConfigError, match=match):
        export_asset(dens, octant_color, AABB, tmp_path / "o", "x", ExportConfig(**{**FAST, **kw}))
    assert not calls and not (tmp_path / "o").exists()


def test_bad_name_and_aabb(tmp_path):
    with pytest.raises(ConfigError, match="not a safe file name"):
        export_asset(sphere_density, octant_color, AABB, tmp_path, "../evil", ExportConfig(**FAST))
    with pytest.raises(ConfigError, match="aabb"):
        export_asset(sphere_density, octant_color, torch.zeros(2, 3), tmp_path, "x", ExportConfig(**FAST))


def test_unwritable_destinations(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("hello")
    for out in (a_file, a_file / "sub"):
        with pytest.raises(T23dError, match="is a file, not a folder"):
            export_asset(sphere_density, octant_color, AABB, out, "x", ExportConfig(**FAST))
    assert a_file.read_text() == "hello"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_destination(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(T23dError, match="not writable"):
            export_asset(sphere_density, octant_color, AABB, ro / "out", "x", ExportConfig(**FAST))
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_slugify():
    assert slugify("A red Crème brûlée, on a plate!") == "a_red_creme_brulee_on_a_plate"
    assert slugify("   ") == "asset" and slugify("日本") == "asset"
    long = slugify("word " * 40)
    assert len(long) <= 64 and not long.endswith("_") and long.startswith("word_word")
    assert slugify("../../etc/passwd") == "etc_passwd"


def test_a_new_export_replaces_the_previous_one_in_the_same_folder(tmp_path):
    """Exports of different formats (or names) into one folder leave one consistent asset: the previous
    export's files that were not rewritten are removed; files t23d did not write stay."""
    (tmp_path / "notes.txt").write_text("mine")
    _export(tmp_path, format="gltf")
    assert {"ball.gltf", "ball.bin", "ball.png"} <= {p.name for p in tmp_path.iterdir()}
    report = _export(tmp_path, name="crate", format="obj")
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"crate.obj", "crate.mtl", "crate.png", "crate_preview.png", "export.json", "notes.txt"}
    assert json.loads((tmp_path / "export.json").read_text())["files"] == [str(p) for p in report.files]


def test_export_cleans_temporary_files_of_a_killed_export(tmp_path):
    import subprocess as sp
    import sys

    proc = sp.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that is gone
    stale = tmp_path / f".ball.glb.t23d-tmp-{proc.pid}-0a1b2c3d"
    stale.write_bytes(b"x" * 1000)
    _export(tmp_path)
    assert not stale.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_resolution_is_bounded_by_memory():
    from t23d.export.config import check_export_memory, validate_export_config

    with pytest.raises(ConfigError, match=r"--resolution 10000 .* 10001\^3 samples needs about 18\.2 TiB"):
        validate_export_config(ExportConfig(resolution=10000))
    # the bound is this machine's memory, and the message says the largest resolution that fits
    with pytest.raises(ConfigError, match="accepted: a resolution of at most 949 here"):
        check_export_memory(1024, memory=2**34)
    check_export_memory(949, memory=2**34)
    validate_export_config(ExportConfig(resolution=384))  # the quality preset's
