"""Readers for nerfstudio ``transforms.json`` and Blender-synthetic ``transforms_{train,val,test}.json``.

Both store camera-to-world OpenGL poses per frame (``transform_matrix``), so poses are taken as is.

nerfstudio keys read: ``fl_x fl_y cx cy w h``, ``k1 k2 k3 k4 p1 p2``, ``camera_model`` (PINHOLE,
OPENCV, OPENCV_FISHEYE), each global or per frame (a per-frame value wins); per-frame ``file_path``,
``transform_matrix``, optional ``mask_path``; optional top-level ``train_filenames`` /
``test_filenames`` (else the split is every ``holdout_every``-th frame). Paths are relative to the
JSON file. Blender: ``camera_angle_x`` (and optional ``camera_angle_y``), principal point at the image
centre, ``file_path`` without extension means ``.png``; the test split is ``transforms_test.json``,
or ``transforms_val.json`` when there is no test file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from t23d.common.errors import T23dError
from t23d.data.cameras import DISTORTION_KEYS, Camera, Frame, SceneFrames, check_model
from t23d.data.images import image_size

#: Camera models accepted in transforms.json.
NERFSTUDIO_MODELS = ("PINHOLE", "OPENCV", "OPENCV_FISHEYE")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise T23dError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise T23dError(f"{path} is not a transforms file: it needs a 'frames' list")
    return data


def _resolve(base: Path, file_path: str, default_ext: str | None = None) -> Path:
    p = base / file_path
    if default_ext and not p.suffix:
        p = p.with_name(p.name + default_ext)
    return p


def check_missing(paths: list[Path], json_path: Path) -> None:
    """Raise listing (up to 10 of) the referenced files that do not exist."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:10])
        more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
        raise T23dError(f"{json_path.name} references {len(missing)} missing file(s): {shown}{more}")


def _pose(frame: dict, json_path: Path, index: int) -> np.ndarray:
    try:
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (KeyError, ValueError, TypeError) as e:
        raise T23dError(f"{json_path}: frame {index} has no valid 'transform_matrix'") from e
    if c2w.shape == (3, 4):
        c2w = np.vstack([c2w, [0, 0, 0, 1]])
    if c2w.shape != (4, 4):
        raise T23dError(f"{json_path}: frame {index} 'transform_matrix' must be 4x4, got {list(c2w.shape)}")
    return c2w


def read_nerfstudio(json_path: Path) -> SceneFrames:
    """Read a nerfstudio ``transforms.json``."""
    data = _read_json(json_path)
    base = json_path.parent
    frames_json = data["frames"]
    paths = []
    for i, f in enumerate(frames_json):
        if "file_path" not in f:
            raise T23dError(f"{json_path}: frame {i} has no 'file_path'")
        paths.append(_resolve(base, f["file_path"]))
    masks = [_resolve(base, f["mask_path"]) if f.get("mask_path") else None for f in frames_json]
    check_missing(paths + [m for m in masks if m is not None], json_path)

    frames = []
    for i, (f, path, mask) in enumerate(zip(frames_json, paths, masks)):

        def get(key: str, default: Any = None, f: dict = f) -> Any:
            return f.get(key, data.get(key, default))

        model = str(get("camera_model", "OPENCV"))
        check_model(model, str(json_path), NERFSTUDIO_MODELS)
        w, h = get("w"), get("h")
        if w is None or h is None:
            w, h = image_size(path)
        fx, fy = get("fl_x"), get("fl_y")
        if fx is None and fy is None:
            raise T23dError(f"{json_path}: frame {i} has no focal length ('fl_x' / 'fl_y')")
        fx = float(fx if fx is not None else fy)
        fy = float(fy if fy is not None else fx)
        cx, cy = float(get("cx", w / 2.0)), float(get("cy", h / 2.0))
        keys = DISTORTION_KEYS[model] if model != "OPENCV" else ("k1", "k2", "k3", "p1", "p2")
        dist = {k: float(get(k, 0.0)) for k in keys}
        cam = Camera(int(w), int(h), fx, fy, cx, cy, model=model, distortion=dist)
        frames.append(Frame(path, _pose(f, json_path, i), cam, mask))

    test_mask = None
    if "test_filenames" in data or "train_filenames" in data:
        test_names = {
            str(_resolve(base, p)) for p in data.get("test_filenames", []) or data.get("val_filenames", [])
        }
        test_mask = [str(p) in test_names for p in paths]
    return SceneFrames(frames, "nerfstudio", test_mask=test_mask)


def read_blender(folder: Path) -> SceneFrames:
    """Read a Blender-synthetic dataset folder (``transforms_train.json`` plus test or val)."""
    train_json = folder / "transforms_train.json"
    test_json = folder / "transforms_test.json"
    if not test_json.is_file():
        test_json = folder / "transforms_val.json"
    splits = [(train_json, False)] + ([(test_json, True)] if test_json.is_file() else [])
    frames, test_mask = [], []
    for json_path, is_test in splits:
        data = _read_json(json_path)
        if "camera_angle_x" not in data:
            raise T23dError(f"{json_path} has no 'camera_angle_x'")
        paths = []
        for i, f in enumerate(data["frames"]):
            if "file_path" not in f:
                raise T23dError(f"{json_path}: frame {i} has no 'file_path'")
            paths.append(_resolve(folder, f["file_path"], ".png"))
        check_missing(paths, json_path)
        for i, (f, path) in enumerate(zip(data["frames"], paths)):
            w, h = image_size(path)
            fx = 0.5 * w / math.tan(0.5 * float(data["camera_angle_x"]))
            fy = 0.5 * h / math.tan(0.5 * float(data["camera_angle_y"])) if "camera_angle_y" in data else fx
            cam = Camera(int(w), int(h), fx, fy, w / 2.0, h / 2.0)
            frames.append(Frame(path, _pose(f, json_path, i), cam))
            test_mask.append(is_test)
    return SceneFrames(frames, "blender", test_mask=test_mask if any(test_mask) else None)
