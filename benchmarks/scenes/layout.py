"""What the benchmark scene set photographs and how: objects, cameras, per-photo lighting, the files'
layout and ``scene.json``. Pure Python + numpy (no Blender), so it is unit-tested.

Conventions (t23d's, see the README): world frame +Z up, objects inside the radius-1 sphere at the
origin with their front facing -Y; ``transform_matrix`` is the OpenGL camera-to-world matrix (camera
looks down its -Z, +Y up), which is also Blender's camera ``matrix_world``; square images,
``camera_angle_x`` the horizontal field of view in radians (the Blender-synthetic layout).

Every random choice comes from ``numpy.random.default_rng`` seeded by ``CaptureConfig.seed`` and the
purpose (train/val/test cameras, lighting), so a scene is the same on every machine, and the test
cameras of a seed do not depend on how the training photos were taken (a walk-around capture with 10
photos is judged on the same unseen views as 100 photos on a sphere).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from t23d.data.cameras import look_at

SCHEMA = "t23d-bench-scene/1"
"""``scene.json``'s ``schema`` value."""
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ObjectSpec:
    """One object of the set."""

    description: str
    """What it is and how it is made."""
    tests: str
    """The surface character it exercises."""
    renderer: Literal["blender", "analytic"]
    """``blender``: Cycles renders (``render_scene.py``); ``analytic``: t23d.data.synthetic's own writer."""


OBJECTS: dict[str, ObjectSpec] = {
    "duck": ObjectSpec(
        "rubber duck from metaballs (body, head, tail) and an ellipsoid beak; flat yellow, orange beak, "
        "slightly glossy",
        "large smooth uniformly coloured regions: photometric loss does not pin density there",
        "blender",
    ),
    "statue": ObjectSpec(
        "Stanford bunny (npm 'bunny' 1.0.1), subdivided, fine stone relief by displacement; one matte albedo",
        "fine geometric relief under a uniform albedo: detail only shading reveals",
        "blender",
    ),
    "teapot": ObjectSpec(
        "teapot made in Blender: lathed body and lid, thin curved spout, thin ring handle; glazed "
        "porcelain painted with blue bands and dots",
        "thin parts (handle ~0.07 wide, spout tip) and a through-hole",
        "blender",
    ),
    "bowl": ObjectSpec(
        "thick-walled lathed bowl: speckled terracotta outside, cream with blue rings inside",
        "a concavity whose inside is seen from above; self-occlusion and self-shadowing",
        "blender",
    ),
    "monkey": ObjectSpec(
        "Suzanne (subdivided twice, eyes fused by a voxel remesh) with a fine multi-colour texture "
        "everywhere",
        "textured everywhere, ears, deep eye sockets; unseen regions under the chin",
        "blender",
    ),
    "candlestick": ObjectSpec(
        "candlestick made in Blender: lathed foot flaring out into the support, thin stem with a knop, "
        "drip pan; glazed ceramic painted with blue bands and dots, a cream wax candle",
        "a base that widens into the table (not a fillet), thin stem, a shallow dish",
        "blender",
    ),
    "boxsphere": ObjectSpec(
        "t23d.data.synthetic's box + sphere with a fine colourful solid texture, unlit (rendered by "
        "t23d's own Blender-format writer, 2x2 anti-aliased)",
        "the project's original benchmark object: flat faces, sharp edges, texture everywhere",
        "analytic",
    ),
}
"""The scene set's objects, in report order."""
BASE_OBJECTS = tuple(OBJECTS)

REFERENCE_LIGHTING: dict[str, float] = {
    "sun_azimuth_deg": -50.0,
    "sun_elevation_deg": 50.0,
    "sun_strength": 2.5,
    "sun_angle_deg": 8.0,
    "sky_strength": 0.6,
}
"""The fixed lighting: a sun (Blender strength in W/m^2, disc angle) from front-right above, and the
soft sky gradient's strength. Every test and val photo uses it."""
VARYING_LIGHTING: dict[str, tuple[float, float]] = {
    "sun_azimuth_deg": (0.0, 360.0),
    "sun_elevation_deg": (20.0, 75.0),
    "sun_strength": (1.2, 3.5),
    "sky_strength": (0.25, 0.7),
    "exposure_ev": (-0.7, 0.7),
    "white_balance": (-1.0, 1.0),
}
"""Uniform ranges drawn per training photo by ``lighting: varying``. ``white_balance`` t gives linear
channel gains (1 + 0.12 t, 1 +- 0.03, 1 - 0.12 t): warm to cool."""


@dataclass(frozen=True)
class CaptureConfig:
    """How one scene is photographed (``make_scenes.py`` options; recorded in ``scene.json``)."""

    num_train: int = 100
    """Training photos."""
    num_val: int = 5
    """Validation photos (``transforms_val.json``; t23d uses the test split when both exist)."""
    num_test: int = 20
    """Unseen test photos, always in the reference lighting."""
    resolution: int = 256
    """Image width = height, pixels."""
    fov_deg: float = 45.0
    """Horizontal field of view, degrees (t23d's synthetic benchmark: 45)."""
    distance: float = 3.0
    """Camera distance from the origin, world units (t23d's synthetic benchmark: 3)."""
    path: Literal["sphere", "walk"] = "sphere"
    """``sphere``: training cameras spread evenly (Fibonacci) over the elevation band; ``walk``: one
    ring (<= 20 photos, 25 deg) or two rings (15 and 40 deg) at a person's height around the object, in
    walking order, with hand-held jitter of azimuth, height, distance, aim and roll."""
    elevation: Literal["capture", "full"] = "capture"
    """``capture``: training views from -10 to 70 degrees of elevation, test views 0-60 (like real
    captures: the bottom is barely seen); ``full``: the whole sphere (-85..85), test views -60..60."""
    lighting: Literal["fixed", "varying"] = "fixed"
    """``varying``: every training photo draws its own sun direction and strength, sky strength,
    exposure and white balance (``VARYING_LIGHTING``); test and val photos keep the reference."""
    background: Literal["transparent", "room"] = "transparent"
    """``transparent``: RGBA photos, alpha = coverage; ``room``: the object on a wooden table inside
    brick walls, RGB photos with no mask (cameras stay >= 5 degrees above the table)."""
    seed: int = 0
    """Seed of every random choice."""

    def __post_init__(self) -> None:
        checks = {
            "num_train": self.num_train >= 1,
            "num_val": self.num_val >= 0,
            "num_test": self.num_test >= 0,
            "resolution": self.resolution >= 8,
            "fov_deg": 10.0 <= self.fov_deg <= 120.0,
            "distance": self.distance > 1.0,
            "path": self.path in ("sphere", "walk"),
            "elevation": self.elevation in ("capture", "full"),
            "lighting": self.lighting in ("fixed", "varying"),
            "background": self.background in ("transparent", "room"),
        }
        accepted = {
            "num_train": ">= 1", "num_val": ">= 0", "num_test": ">= 0", "resolution": ">= 8",
            "fov_deg": "10..120", "distance": "> 1 (outside the object sphere)", "path": "sphere | walk",
            "elevation": "capture | full", "lighting": "fixed | varying",
            "background": "transparent | room",
        }  # fmt: skip
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"{key}: invalid value {getattr(self, key)!r}; accepted: {accepted[key]}")

    def elevation_bands(self) -> dict[str, tuple[float, float]]:
        """Elevation range (degrees) of each split's cameras."""
        train, test = (
            ((-10.0, 70.0), (0.0, 60.0)) if self.elevation == "capture" else ((-85.0, 85.0), (-60.0, 60.0))
        )
        if self.background == "room":  # stay above the table top
            train, test = (max(train[0], 5.0), train[1]), (max(test[0], 10.0), test[1])
        return {"train": train, "val": test, "test": test}


def scene_name(obj: str, cfg: CaptureConfig) -> str:
    """Folder name of a scene: the object, then every option that differs from the default.

    >>> scene_name("duck", CaptureConfig(path="walk", num_train=20))
    'duck-walk20'
    """
    base = CaptureConfig()
    parts = [obj]
    if cfg.path == "walk":
        parts.append(f"walk{cfg.num_train}")
    elif cfg.num_train != base.num_train:
        parts.append(f"views{cfg.num_train}")
    for key in ("elevation", "lighting", "background"):
        value = getattr(cfg, key)
        if value != getattr(base, key):
            parts.append(value)
    for key, tag in (("resolution", "px"), ("seed", "seed")):
        value = getattr(cfg, key)
        if value != getattr(base, key):
            parts.append(f"{tag}{value}")
    return "-".join(parts)


def _rng(seed: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng([seed, sum(ord(c) << (8 * (i % 4)) for i, c in enumerate(purpose))])


def sphere_band_positions(num: int, elevation_deg: tuple[float, float], phase: float) -> np.ndarray:
    """``[num, 3]`` unit directions spread evenly (equal area, Fibonacci) over an elevation band,
    ordered from the lowest to the highest; ``phase`` (radians) turns them about +Z."""
    lo, hi = (math.sin(math.radians(e)) for e in elevation_deg)
    k = np.arange(num) + 0.5
    z = lo + (hi - lo) * k / num
    az = phase + k * math.pi * (3.0 - math.sqrt(5.0))  # golden angle
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, 1.0))
    return np.stack([r * np.cos(az), r * np.sin(az), z], axis=-1)


def _roll(c2w: np.ndarray, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    rz = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    out = c2w.copy()
    out[:3, :3] = c2w[:3, :3] @ rz
    return out


def walk_poses(num: int, distance: float, rng: np.random.Generator) -> np.ndarray:
    """``[num, 4, 4]`` hand-held walk-around poses: rings at a person's height, in walking order."""
    rings = [(25.0, num)] if num <= 20 else [(15.0, math.ceil(0.6 * num)), (40.0, num - math.ceil(0.6 * num))]
    poses = []
    start = rng.uniform(0.0, 2 * math.pi)
    for elevation, count in rings:
        for k in range(count):
            az = start + 2 * math.pi * (k + rng.uniform(-0.3, 0.3)) / count
            el = math.radians(elevation + float(np.clip(rng.normal(0.0, 2.5), -5.0, 5.0)))
            d = distance * rng.uniform(0.97, 1.1)
            eye = d * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
            target = np.clip(rng.normal(0.0, 0.04, 3), -0.08, 0.08)
            roll = float(np.clip(rng.normal(0.0, 3.0), -8.0, 8.0))
            poses.append(_roll(look_at(eye, target), roll))
    return np.stack(poses)


def capture_poses(cfg: CaptureConfig) -> dict[str, np.ndarray]:
    """OpenGL camera-to-world poses ``[N, 4, 4]`` of each split (world frame, looking at the object)."""
    bands = cfg.elevation_bands()
    out = {}
    for split, count in (("train", cfg.num_train), ("val", cfg.num_val), ("test", cfg.num_test)):
        rng = _rng(cfg.seed, f"cameras-{split}")
        if split == "train" and cfg.path == "walk":
            out[split] = walk_poses(count, cfg.distance, rng)
            continue
        dirs = sphere_band_positions(count, bands[split], rng.uniform(0.0, 2 * math.pi))
        out[split] = (
            np.stack([look_at(cfg.distance * d, np.zeros(3)) for d in dirs]) if count else np.zeros((0, 4, 4))
        )
    return out


def photo_lighting(cfg: CaptureConfig, split: str, num: int) -> list[dict[str, Any]]:
    """Per-photo ``{"lighting": {...}, "gain": [r, g, b], "exposure_ev", "white_balance"}`` of a split.

    The gain multiplies the linear image (exposure 2^ev times the white-balance channel gains)."""
    if cfg.lighting == "fixed" or split != "train":
        return [
            {
                "lighting": dict(REFERENCE_LIGHTING),
                "gain": [1.0, 1.0, 1.0],
                "exposure_ev": 0.0,
                "white_balance": 0.0,
            }
        ] * num
    rng = _rng(cfg.seed, "lighting")
    out = []
    for _ in range(num):
        u = {k: float(rng.uniform(*v)) for k, v in VARYING_LIGHTING.items()}
        light = dict(REFERENCE_LIGHTING)
        light.update(
            {k: u[k] for k in ("sun_azimuth_deg", "sun_elevation_deg", "sun_strength", "sky_strength")}
        )
        t, green = u["white_balance"], float(rng.uniform(-0.03, 0.03))
        scale = 2.0 ** u["exposure_ev"]
        gain = [scale * (1 + 0.12 * t), scale * (1 + green), scale * (1 - 0.12 * t)]
        out.append({"lighting": light, "gain": gain, "exposure_ev": u["exposure_ev"], "white_balance": t})
    return out


def blender_frames(cfg: CaptureConfig) -> list[dict[str, Any]]:
    """Every photo to render, in order: split, name (``r_<i>``), c2w, lighting and gain."""
    poses = capture_poses(cfg)
    frames = []
    for split in SPLITS:
        for i, (c2w, light) in enumerate(zip(poses[split], photo_lighting(cfg, split, len(poses[split])))):
            frames.append({"split": split, "name": f"r_{i}", "c2w": np.asarray(c2w).tolist(), **light})
    return frames


def transforms_json(
    cfg: CaptureConfig, frames: list[dict[str, Any]], split: str, albedo: bool
) -> dict[str, Any]:
    """A Blender-synthetic ``transforms_<split>.json`` for ``frames`` of ``split``.

    Beside the standard ``file_path`` / ``rotation`` / ``transform_matrix``, each frame records
    ``albedo_file_path`` (when rendered) and, for varying lighting, its ``t23d_capture`` conditions."""
    out_frames = []
    for f in frames:
        if f["split"] != split:
            continue
        frame: dict[str, Any] = {
            "file_path": f"./{split}/{f['name']}",
            "rotation": 0.0,
            "transform_matrix": f["c2w"],
        }
        if albedo:
            frame["albedo_file_path"] = f"./{split}/{f['name']}_albedo"
        if cfg.lighting == "varying":
            frame["t23d_capture"] = {k: f[k] for k in ("lighting", "gain", "exposure_ev", "white_balance")}
        out_frames.append(frame)
    return {"camera_angle_x": math.radians(cfg.fov_deg), "frames": out_frames}


REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "name": str,
    "object": str,
    "description": str,
    "tests": str,
    "capture": dict,
    "elevation_deg": dict,
    "lighting": dict,
    "splits": dict,
    "images": str,
    "albedo": (dict, type(None)),
    "gt": dict,
    "renderer": dict,
    "conventions": dict,
    "seed": int,
    "created": str,
    "command": str,
}
"""``scene.json``'s keys and their types (``validate_scene_record`` checks them)."""


def scene_record(
    name: str, obj: str, cfg: CaptureConfig, *, gt: dict[str, Any], renderer: dict[str, Any],
    albedo: dict[str, Any] | None, created: str, command: str,
) -> dict[str, Any]:  # fmt: skip
    """The ``scene.json`` of a rendered scene (see ``REQUIRED_KEYS``)."""
    spec = OBJECTS[obj]
    lighting: dict[str, Any] = {"mode": cfg.lighting, "reference": dict(REFERENCE_LIGHTING)}
    if cfg.lighting == "varying":
        lighting["per_photo_ranges"] = {k: list(v) for k, v in VARYING_LIGHTING.items()}
        lighting["applies_to"] = (
            "train photos (per frame in transforms_train.json 't23d_capture'); val/test use the reference"
        )
    record = {
        "schema": SCHEMA,
        "name": name,
        "object": obj,
        "description": spec.description,
        "tests": spec.tests,
        "capture": dataclasses.asdict(cfg),
        "elevation_deg": {k: list(v) for k, v in cfg.elevation_bands().items()},
        "lighting": lighting,
        "splits": {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test},
        "images": "RGBA" if cfg.background == "transparent" else "RGB",
        "albedo": albedo,
        "gt": gt,
        "renderer": renderer,
        "conventions": {
            "world": "+Z up; object inside the radius-1 sphere at the origin; front faces -Y",
            "camera": "transform_matrix = OpenGL camera-to-world (Blender camera matrix_world)",
            "colour": "8-bit sRGB PNG; RGBA photos have straight alpha",
        },
        "seed": cfg.seed,
        "created": created,
        "command": command,
    }
    validate_scene_record(record)
    return record


def validate_scene_record(record: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every missing or mistyped key of a ``scene.json`` record."""
    problems = []
    for key, typ in REQUIRED_KEYS.items():
        if key not in record:
            problems.append(f"missing '{key}'")
        elif not isinstance(record[key], typ):
            problems.append(f"'{key}' is {type(record[key]).__name__}, expected {typ}")
    if not problems:
        if record["schema"] != SCHEMA:
            problems.append(f"schema {record['schema']!r} is not {SCHEMA!r}")
        if record["object"] not in OBJECTS:
            problems.append(f"object {record['object']!r} is not one of {', '.join(OBJECTS)}")
        if set(record["splits"]) != set(SPLITS):
            problems.append(f"splits has keys {sorted(record['splits'])}, expected {list(SPLITS)}")
        if record["gt"].get("kind") not in ("mesh", "points") or not record["gt"].get("path"):
            problems.append("gt must be {'kind': 'mesh' | 'points', 'path': FILE}")
        CaptureConfig(**record["capture"])  # raises ValueError on a bad option
    if problems:
        raise ValueError("scene.json: " + "; ".join(problems))
