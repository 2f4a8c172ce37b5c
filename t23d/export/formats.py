"""OBJ (+ MTL + PNG) and binary PLY (per-vertex colours) encoders. Coordinates +Y up, metres."""

from __future__ import annotations

import io

import numpy as np

import t23d


def encode_obj_files(
    name: str, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, uvs: np.ndarray, png: bytes
) -> dict[str, bytes]:
    """File name -> bytes for ``<name>.obj``, ``<name>.mtl`` and ``<name>.png``.

    OBJ texture coordinates use the OpenGL convention (origin bottom-left, v up), the same as t23d's
    UVs, so ``vt`` holds them unchanged. Faces are 1-based ``v/vt/vn`` triples, counter-clockwise
    from outside.
    """
    buf = io.StringIO()
    buf.write(f"# t23d {t23d.__version__}\nmtllib {name}.mtl\no {name}\n")
    np.savetxt(buf, np.asarray(vertices, dtype=np.float64), fmt="v %.7g %.7g %.7g")
    np.savetxt(buf, np.asarray(uvs, dtype=np.float64), fmt="vt %.7g %.7g")
    np.savetxt(buf, np.asarray(normals, dtype=np.float64), fmt="vn %.6g %.6g %.6g")
    buf.write(f"usemtl {name}_material\ns 1\n")
    f1 = np.asarray(faces, dtype=np.int64) + 1
    np.savetxt(buf, np.repeat(f1, 3, axis=1), fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
    mtl = (
        f"# t23d {t23d.__version__}\nnewmtl {name}_material\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nNs 1\nd 1\n"
        f"illum 1\nmap_Kd {name}.png\n"
    )
    return {
        f"{name}.obj": buf.getvalue().encode("ascii"),
        f"{name}.mtl": mtl.encode("ascii"),
        f"{name}.png": png,
    }


def encode_ply(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, colors: np.ndarray) -> bytes:
    """Binary little-endian PLY: x y z nx ny nz (float32) red green blue (uchar, sRGB); uchar-count int faces."""
    v = len(vertices)
    vert = np.zeros(
        v,
        dtype=[("p", "<f4", 3), ("n", "<f4", 3), ("c", "u1", 3)],
    )
    vert["p"] = vertices
    vert["n"] = normals
    vert["c"] = colors
    face = np.zeros(len(faces), dtype=[("k", "u1"), ("i", "<i4", 3)])
    face["k"] = 3
    face["i"] = faces
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"comment t23d {t23d.__version__}, +Y up, metres, sRGB vertex colours\n"
        f"element vertex {v}\nproperty float x\nproperty float y\nproperty float z\n"
        "property float nx\nproperty float ny\nproperty float nz\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    return header.encode("ascii") + vert.tobytes() + face.tobytes()
