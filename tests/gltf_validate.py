"""Run the official Khronos glTF-Validator (npm ``gltf-validator``, pinned in tests/package.json), and
load assets with three.js's own ``GLTFLoader`` (npm ``three``, same file; see ``threejs_load.mjs``) and,
where ``T23D_BLENDER_PYTHON`` names a Python with ``bpy``, with Blender's glTF importer (``blender_import.py``).

Setup (CI): ``npm ci --prefix tests`` (uses tests/package-lock.json). If ``tests/node_modules`` is
missing, :func:`validate_gltf` runs that command itself once; if it cannot (no npm, no network) it
raises with the command to run, so tests fail loudly instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
VALIDATOR_DIR = TESTS_DIR / "node_modules" / "gltf-validator"
THREE_DIR = TESTS_DIR / "node_modules" / "three"
INSTALL_CMD = ["npm", "ci", "--prefix", str(TESTS_DIR), "--no-audit", "--no-fund"]
BLENDER_PYTHON = os.environ.get("T23D_BLENDER_PYTHON")
"""A Python interpreter with ``bpy`` (Blender as a module); unset skips the tests marked :data:`needs_blender`."""
needs_blender = pytest.mark.skipif(
    not BLENDER_PYTHON, reason="set T23D_BLENDER_PYTHON to a Python with bpy (pip install bpy; .ci/run does)"
)
"""Marks a test that imports assets into Blender (:func:`load_with_blender`)."""

_NODE_SCRIPT = r"""
const fs = require('fs');
const path = require('path');
const validator = require(process.argv[1]);
const file = process.argv[2];
const dir = path.dirname(file);
validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
  uri: path.basename(file),
  maxIssues: 200,
  externalResourceFunction: (uri) => new Promise((resolve, reject) => {
    fs.readFile(path.join(dir, decodeURIComponent(uri)), (err, data) => err ? reject(err.toString()) : resolve(new Uint8Array(data)));
  }),
}).then((report) => { process.stdout.write(JSON.stringify(report)); })
  .catch((err) => { process.stderr.write(String(err)); process.exit(1); });
"""


def ensure_validator() -> Path:
    """Return the validator package folder, running ``npm ci --prefix tests`` once if a package is missing."""
    if VALIDATOR_DIR.is_dir() and THREE_DIR.is_dir():
        return VALIDATOR_DIR
    how = f"run `{' '.join(INSTALL_CMD[:4])}` from the repository root (needs Node >= 16 and npm)"
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise RuntimeError(
            f"the test's node packages (gltf-validator, three) are missing and node/npm too: {how}"
        )
    proc = subprocess.run(INSTALL_CMD, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not VALIDATOR_DIR.is_dir() or not THREE_DIR.is_dir():
        raise RuntimeError(
            f"installing the test's node packages failed ({proc.stderr.strip()[-500:]}); {how}"
        )
    return VALIDATOR_DIR


def load_with_threejs(path: str | Path) -> dict:
    """Load a .glb with three.js's GLTFLoader (Node); return what it built (see threejs_load.mjs)."""
    ensure_validator()
    proc = subprocess.run(
        ["node", str(TESTS_DIR / "threejs_load.mjs"), str(Path(path).resolve())],
        capture_output=True, text=True, timeout=120, cwd=TESTS_DIR,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"three.js could not load {path}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def load_with_blender(path: str | Path) -> dict:
    """Import a .glb into Blender (``blender_import.py`` run by :data:`BLENDER_PYTHON`); return its report
    (``result`` of the import operator and, per mesh, polygons, UV layers, bounding box and materials)."""
    proc = subprocess.run(
        [str(BLENDER_PYTHON), str(TESTS_DIR / "blender_import.py"), str(path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("T23D-JSON "))
    return json.loads(line[len("T23D-JSON ") :])


class GlbReader:
    """A GLB's first mesh primitive and images read with pygltflib straight from the binary chunk, with no
    library conventions (what a viewer receives)."""

    def __init__(self, path: str | Path) -> None:
        import pygltflib

        self.gltf = pygltflib.GLTF2().load(str(path))
        """The parsed glTF JSON (pygltflib)."""
        self.blob = self.gltf.binary_blob()
        self.primitive = self.gltf.meshes[0].primitives[0]
        """The first primitive of the first mesh."""

    def accessor(self, index: int, components: int, dtype: Any) -> np.ndarray:
        """Accessor ``index`` as a ``[count, components]`` array of ``dtype``."""
        a = self.gltf.accessors[index]
        view = self.gltf.bufferViews[a.bufferView]
        return np.frombuffer(
            self.blob, dtype=dtype, count=a.count * components, offset=view.byteOffset
        ).reshape(a.count, components)

    def faces(self) -> np.ndarray:
        """The primitive's triangles ``[F, 3]`` (int64) from its uint16 or uint32 indices."""
        index = self.primitive.indices
        dtype = np.uint16 if self.gltf.accessors[index].componentType == 5123 else np.uint32
        return self.accessor(index, 1, dtype).reshape(-1, 3).astype(np.int64)

    def image_rgb(self, image: int) -> np.ndarray:
        """Image ``image`` (embedded PNG) decoded to ``[H, W, 3]`` uint8."""
        import io

        from PIL import Image

        view = self.gltf.bufferViews[self.gltf.images[image].bufferView]
        png = self.blob[view.byteOffset : view.byteOffset + view.byteLength]
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def validate_gltf(path: str | Path) -> dict:
    """Validate a .glb or .gltf file; return the validator's report dict.

    The report has ``issues.numErrors``, ``issues.numWarnings``, ``issues.messages`` (each with
    ``code``, ``message``, ``severity`` 0 = error, ``pointer``) and ``info`` (counts, resources).
    External resources (.bin, .png) are read relative to the file.
    """
    validator = ensure_validator()
    proc = subprocess.run(
        ["node", "-e", _NODE_SCRIPT, str(validator), str(Path(path).resolve())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"glTF-Validator failed on {path}: {proc.stderr.strip()[-1000:]}")
    return json.loads(proc.stdout)


def error_messages(report: dict) -> list[str]:
    """The error-severity messages of a report, formatted ``code pointer: message``."""
    return [
        f"{m.get('code')} {m.get('pointer', '')}: {m.get('message')}"
        for m in report.get("issues", {}).get("messages", [])
        if m.get("severity") == 0
    ]
