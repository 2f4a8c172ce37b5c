"""glTF 2.0 encoding (GLB or .gltf + .bin + .png), written directly from the spec.

One mesh, one primitive (triangles), one node, one scene, one pbrMetallicRoughness material whose
baseColorTexture is the baked sRGB PNG (metallicFactor 0, roughnessFactor 1). Attributes: POSITION
(with min/max), NORMAL (unit length), TEXCOORD_0; with a normal map also TANGENT (xyz unit, w = +-1,
bitangent = w * cross(NORMAL, TANGENT)) and the material's ``normalTexture`` (a linear PNG in the
glTF / OpenGL "+Y up" tangent-space convention, see :mod:`t23d.texture.normal_map`). glTF UVs have their origin at the image's top-left,
so TEXCOORD_0 = (u, 1 - v) for t23d's OpenGL-style (v up) UVs. Coordinates are +Y up, metres.
Encoding happens in memory; the caller writes the returned files atomically.
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np

import t23d

_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_FLOAT = 5126
_UNSIGNED_SHORT = 5123
_UNSIGNED_INT = 5125
_LINEAR = 9729
_LINEAR_MIPMAP_LINEAR = 9987
_CLAMP_TO_EDGE = 33071


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an [H, W, 3|4] uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _pad4(data: bytes, fill: bytes = b"\x00") -> bytes:
    return data + fill * (-len(data) % 4)


def build_gltf(
    name: str,
    vertices: np.ndarray,
    faces: np.ndarray,
    normals: np.ndarray,
    uvs: np.ndarray,
    png: bytes,
    *,
    binary: bool,
    tangents: np.ndarray | None = None,
    normal_png: bytes | None = None,
) -> tuple[dict, bytes]:
    """Build the glTF JSON and its binary buffer.

    Args:
        name: asset name (used for the scene, node, mesh, material and, for .gltf, file names).
        vertices: [V, 3] positions, Y up, metres. normals: [V, 3] unit. uvs: [V, 2] in [0, 1], v up.
        faces: [F, 3] counter-clockwise from outside. png: base-colour PNG bytes.
        binary: True for GLB (image stored in the buffer), False for .gltf (image and buffer as
            sibling files ``<name>.png`` and ``<name>.bin``; the normal map as ``<name>_normal.png``).
        tangents: [V, 4] unit xyz + handedness w, with ``normal_png`` (both or neither).
        normal_png: tangent-space normal map PNG bytes (linear).

    Returns:
        (gltf JSON dict, buffer bytes).
    """
    pos = np.ascontiguousarray(vertices, dtype=np.float32)
    nrm = np.asarray(normals, dtype=np.float64)
    nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-30)
    nrm = np.ascontiguousarray(nrm, dtype=np.float32)
    tex = np.ascontiguousarray(np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], axis=1), dtype=np.float32)
    small = len(pos) <= 65535
    idx = np.ascontiguousarray(faces, dtype=np.uint16 if small else np.uint32).reshape(-1)
    chunks: list[bytes] = []
    views: list[dict] = []

    def add_view(data: bytes, target: int | None) -> int:
        offset = sum(len(c) for c in chunks)
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        chunks.append(_pad4(data))
        return len(views) - 1

    accessors = [
        {
            "bufferView": add_view(pos.tobytes(), _ARRAY_BUFFER),
            "componentType": _FLOAT,
            "count": len(pos),
            "type": "VEC3",
            "min": pos.min(axis=0).tolist(),
            "max": pos.max(axis=0).tolist(),
        },
        {
            "bufferView": add_view(nrm.tobytes(), _ARRAY_BUFFER),
            "componentType": _FLOAT,
            "count": len(nrm),
            "type": "VEC3",
        },
        {
            "bufferView": add_view(tex.tobytes(), _ARRAY_BUFFER),
            "componentType": _FLOAT,
            "count": len(tex),
            "type": "VEC2",
        },
        {
            "bufferView": add_view(idx.tobytes(), _ELEMENT_ARRAY_BUFFER),
            "componentType": _UNSIGNED_SHORT if small else _UNSIGNED_INT,
            "count": int(idx.size),
            "type": "SCALAR",
        },
    ]
    attributes = {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2}
    if (tangents is None) != (normal_png is None):
        raise ValueError("build_gltf: pass tangents and normal_png together")
    if tangents is not None:
        tan = np.asarray(tangents, dtype=np.float64)
        xyz = tan[:, :3] / np.maximum(np.linalg.norm(tan[:, :3], axis=1, keepdims=True), 1e-30)
        tan = np.ascontiguousarray(
            np.concatenate([xyz, np.sign(tan[:, 3:4]) + (tan[:, 3:4] == 0)], 1), np.float32
        )
        accessors.append(
            {"bufferView": add_view(tan.tobytes(), _ARRAY_BUFFER), "componentType": _FLOAT, "count": len(tan), "type": "VEC4"}
        )  # fmt: skip
        attributes["TANGENT"] = len(accessors) - 1
    images = []
    for suffix, data, role in (("", png, "basecolor"), ("_normal", normal_png, "normal")):
        if data is None:
            continue
        if binary:
            images.append(
                {"name": f"{name}_{role}", "bufferView": add_view(data, None), "mimeType": "image/png"}
            )
        else:
            images.append({"name": f"{name}_{role}", "uri": f"{name}{suffix}.png", "mimeType": "image/png"})
    material = {
        "name": f"{name}_material",
        "pbrMetallicRoughness": {
            "baseColorTexture": {"index": 0, "texCoord": 0},
            "metallicFactor": 0.0,
            "roughnessFactor": 1.0,
        },
        "doubleSided": False,
    }
    if normal_png is not None:
        material["normalTexture"] = {"index": 1, "texCoord": 0}
    buffer = b"".join(chunks)
    gltf = {
        "asset": {"version": "2.0", "generator": f"t23d {t23d.__version__}"},
        "scene": 0,
        "scenes": [{"name": name, "nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [
            {
                "name": name,
                "primitives": [
                    {
                        "attributes": attributes,
                        "indices": 3,
                        "material": 0,
                        "mode": 4,
                    }
                ],
            }
        ],
        "materials": [material],
        "samplers": [
            {
                "magFilter": _LINEAR,
                "minFilter": _LINEAR_MIPMAP_LINEAR,
                "wrapS": _CLAMP_TO_EDGE,
                "wrapT": _CLAMP_TO_EDGE,
            }
        ],
        "textures": [{"sampler": 0, "source": k} for k in range(len(images))],
        "images": images,
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [
            {"byteLength": len(buffer)} if binary else {"uri": f"{name}.bin", "byteLength": len(buffer)}
        ],
    }
    return gltf, buffer


def encode_glb(gltf: dict, buffer: bytes) -> bytes:
    """GLB container bytes: 12-byte header, JSON chunk (space-padded), BIN chunk (zero-padded)."""
    js = _pad4(json.dumps(gltf, separators=(",", ":")).encode("utf-8"), b" ")
    bin_ = _pad4(buffer)
    total = 12 + 8 + len(js) + 8 + len(bin_)
    return b"".join(
        [
            struct.pack("<4sII", b"glTF", 2, total),
            struct.pack("<I4s", len(js), b"JSON"),
            js,
            struct.pack("<I4s", len(bin_), b"BIN\x00"),
            bin_,
        ]
    )


def encode_gltf_files(
    name: str,
    vertices: np.ndarray,
    faces: np.ndarray,
    normals: np.ndarray,
    uvs: np.ndarray,
    png: bytes,
    *,
    binary: bool,
    tangents: np.ndarray | None = None,
    normal_png: bytes | None = None,
) -> dict[str, bytes]:
    """File name -> bytes for a GLB (``<name>.glb``) or a .gltf (``<name>.gltf``, ``.bin``, ``.png``,
    and ``<name>_normal.png`` with a normal map)."""
    gltf, buffer = build_gltf(
        name, vertices, faces, normals, uvs, png, binary=binary, tangents=tangents, normal_png=normal_png
    )
    if binary:
        return {f"{name}.glb": encode_glb(gltf, buffer)}
    text = json.dumps(gltf, indent=2).encode("utf-8")
    files = {f"{name}.gltf": text, f"{name}.bin": buffer, f"{name}.png": png}
    if normal_png is not None:
        files[f"{name}_normal.png"] = normal_png
    return files
