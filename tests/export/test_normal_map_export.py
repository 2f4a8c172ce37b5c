"""Normal maps in exported assets: validator, the glTF convention end to end, three.js, Blender, options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_fields import AABB, RES, smooth_color, sphere_density
from gltf_validate import (
    GlbReader,
    error_messages,
    load_with_blender,
    load_with_threejs,
    needs_blender,
    validate_gltf,
)

from t23d.common.errors import ConfigError
from t23d.export import ExportConfig, export_asset, export_mesh_asset
from t23d.export.transform import ZUP_TO_YUP

FAST = dict(resolution=RES, faces=1500, texture_size=256, fidelity_views=0, preview_size=64, normal_map=True)


def dimpled_normals(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """The sphere's normals tilted by a smooth pattern (an analytic 'detail surface', field frame)."""
    n = points / np.linalg.norm(points, axis=-1, keepdims=True)
    tilt = 0.35 * np.stack([np.sin(9 * n[:, 2]), np.cos(7 * n[:, 0]), np.sin(5 * n[:, 1])], -1)
    tilt -= n * (tilt * n).sum(-1, keepdims=True)
    out = n + tilt
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def bumpy_glb(tmp_path_factory):
    cfg = ExportConfig(**FAST)
    return export_asset(sphere_density, smooth_color, AABB, tmp_path_factory.mktemp("nm"), "ball", cfg,
                        normal_fn=dimpled_normals)  # fmt: skip


def _arrays(path: Path):
    glb = GlbReader(path)
    g, attrs = glb.gltf, glb.primitive.attributes
    return dict(
        pos=glb.accessor(attrs.POSITION, 3, np.float32).astype(np.float64),
        nrm=glb.accessor(attrs.NORMAL, 3, np.float32).astype(np.float64),
        tan=glb.accessor(attrs.TANGENT, 4, np.float32).astype(np.float64),
        uv=glb.accessor(attrs.TEXCOORD_0, 2, np.float32).astype(np.float64),
        faces=glb.faces(),
        normal_image=glb.image_rgb(g.textures[g.materials[0].normalTexture.index].source),
        gltf=g,
    )


def test_asset_with_normal_map_is_validator_clean(bumpy_glb):
    report = validate_gltf(bumpy_glb.asset_path)
    assert report["issues"]["numErrors"] == 0, error_messages(report)
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"]
    a = _arrays(bumpy_glb.asset_path)
    g = a["gltf"]
    assert g.materials[0].normalTexture.index == 1 and g.materials[0].normalTexture.texCoord == 0
    assert g.images[1].name == "ball_normal" and a["normal_image"].shape == (256, 256, 3)
    np.testing.assert_allclose(np.linalg.norm(a["tan"][:, :3], axis=-1), 1.0, atol=1e-5)
    assert set(np.unique(a["tan"][:, 3])) <= {-1.0, 1.0}
    assert np.abs((a["tan"][:, :3] * a["nrm"]).sum(-1)).max() < 1e-4
    info = json.loads(bumpy_glb.report_path.read_text())["normal_map"]
    assert info["size"] == 256 and info["error_deg"] < 2.0 and info["baseline_deg"] > 10.0


def test_normal_map_decodes_to_the_detail_normals_with_the_gltf_formula(bumpy_glb):
    """Read only the .glb: n = normalize(x T + y B + z N), B = w (N x T), TEXCOORD_0 origin top-left; the
    result matches the detail normals (mapped into glTF's frame) far better than the plain normals."""
    a = _arrays(bumpy_glb.asset_path)
    rng = np.random.default_rng(0)
    face = rng.integers(0, len(a["faces"]), 3000)
    bary = rng.dirichlet([1.0, 1.0, 1.0], 3000)
    c = a["faces"][face]

    def lerp(x):
        return np.einsum("pk,pkc->pc", bary, x[c])

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    n, t, uv, pos = unit(lerp(a["nrm"])), unit(lerp(a["tan"][:, :3])), lerp(a["uv"]), lerp(a["pos"])
    b = a["tan"][c[:, 0], 3:4] * np.cross(n, t)
    s = a["normal_image"].shape[0]
    texel = a["normal_image"][
        np.clip((uv[:, 1] * s).astype(int), 0, s - 1), np.clip((uv[:, 0] * s).astype(int), 0, s - 1)
    ]
    local = texel / 255.0 * 2.0 - 1.0
    decoded = unit(local[:, :1] * t + local[:, 1:2] * b + local[:, 2:3] * n)
    m = np.array(bumpy_glb.transform)
    field_pos = (pos - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T  # back to the field frame
    truth = dimpled_normals(field_pos, None) @ ZUP_TO_YUP[:3, :3].T  # the detail, in glTF's frame
    err = np.degrees(np.arccos(np.clip((decoded * truth).sum(-1), -1, 1)))
    plain = np.degrees(np.arccos(np.clip((n * truth).sum(-1), -1, 1)))
    assert plain.mean() > 10.0
    assert err.mean() < 3.0 and err.mean() < 0.2 * plain.mean(), (err.mean(), plain.mean())


def test_threejs_sees_the_normal_map_and_tangents(bumpy_glb):
    (mesh,) = load_with_threejs(bumpy_glb.asset_path)["meshes"]
    assert mesh["attributes"] == ["normal", "position", "tangent", "uv"]
    assert mesh["tangents"] == {"itemSize": 4}
    nm = mesh["normalMap"]
    assert nm["width"] == 256 and nm["height"] == 256 and nm["flipY"] is False
    assert nm["colorSpace"] != "srgb" and nm["sameUVs"]  # linear data on the base colour's UVs
    assert nm["normalScale"] == [1, 1]  # vertex tangents given: three.js uses them as they are


@needs_blender
def test_blender_imports_the_normal_map(bumpy_glb):
    (mesh,) = load_with_blender(bumpy_glb.asset_path)["meshes"]
    (mat,) = mesh["materials"]
    assert mat["normal_map"]["space"] == "TANGENT"
    assert mat["normal_map"]["image"] == {"size": [256, 256], "colorspace": "Non-Color"}


def test_normal_map_needs_a_detail_source_and_is_skipped_for_obj(tmp_path):
    with pytest.raises(ConfigError, match="normal_map: true needs the field's detail normals"):
        export_asset(sphere_density, smooth_color, AABB, tmp_path / "a", "ball", ExportConfig(**FAST))
    assert not (tmp_path / "a").exists()
    report = export_asset(sphere_density, smooth_color, AABB, tmp_path / "b", "ball",
                          ExportConfig(**{**FAST, "format": "obj"}))  # fmt: skip
    assert report.normal_map is None and (tmp_path / "b" / "ball.obj").is_file()
    with pytest.raises(ConfigError, match="normal_map_size: texture_size must be a power of two"):
        export_asset(sphere_density, smooth_color, AABB, tmp_path / "c", "ball",
                     ExportConfig(**{**FAST, "normal_map_size": 100}), normal_fn=dimpled_normals)  # fmt: skip


def test_mesh_export_bakes_the_dense_mesh_into_the_decimated_asset(tmp_path):
    """export_mesh_asset: the detail is the mesh itself before decimation (a bumpy dense sphere)."""
    import trimesh

    dense = trimesh.creation.icosphere(subdivisions=6, radius=0.5)
    bump = 1.0 + 0.05 * np.sin(20 * dense.vertices[:, :1]) * np.sin(20 * dense.vertices[:, 1:2])
    v = dense.vertices * bump
    cfg = ExportConfig(**{**FAST, "faces": 800})
    report = export_mesh_asset(v, dense.faces, smooth_color, tmp_path, "bumps", cfg)
    assert report.num_faces <= 800
    info = report.normal_map
    assert info["baseline_deg"] > 5.0 and info["error_deg"] < 0.35 * info["baseline_deg"], info
    result = validate_gltf(report.asset_path)
    assert result["issues"]["numErrors"] == 0, error_messages(result)
