"""UV unwrapping with xatlas.

UV convention returned here (and used by :mod:`t23d.texture.bake` and :mod:`t23d.export`): OpenGL /
xatlas style, u to the right and **v up**, both in [0, 1]; texel row ``r`` of the image (row 0 at the
top, as written to PNG) holds v in ``[1 - (r+1)/S, 1 - r/S]``. glTF's TEXCOORD_0 has its origin at the
top-left, so the glTF writer stores ``(u, 1 - v)``; OBJ stores ``(u, v)`` as is.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from t23d.common.errors import T23dError

log = logging.getLogger(__name__)


def unwrap_uv(
    vertices: np.ndarray, faces: np.ndarray, *, texture_size: int = 1024, padding: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parameterise the mesh into one UV atlas with xatlas.

    Options chosen for speed at ~50k faces: default chart growing (one iteration), packing with
    ``blockAlign`` (4x4-aligned placements, far fewer candidates) and random rather than brute-force
    placement, charts padded by ``padding`` texels at an atlas resolution of about ``texture_size``.
    xatlas is single-threaded; expect roughly 5-15 s for 50k faces on these CPUs (it grows faster
    than linearly, so decimate first).

    Args:
        vertices: [V, 3] float positions.
        faces: [F, 3] int triangle indices.
        texture_size: target atlas resolution in texels (used for packing density and padding).
        padding: texels of gap around each chart.

    Returns:
        (vertices [V', 3] float32 = vertices[vmapping], faces [F, 3] int32 into the new vertices,
        uvs [V', 2] float32 in [0, 1] (v up), vmapping [V'] int64 original vertex index per new vertex).
        Vertices on chart seams are duplicated, so V' >= V.
    """
    import xatlas

    v = np.ascontiguousarray(vertices, dtype=np.float32)
    f = np.ascontiguousarray(faces, dtype=np.uint32)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise T23dError(f"unwrap_uv needs vertices [V, 3] and faces [F>0, 3]; got {v.shape} and {f.shape}")
    t0 = time.perf_counter()
    atlas = xatlas.Atlas()
    atlas.add_mesh(v, f)
    chart_options = xatlas.ChartOptions()
    pack_options = xatlas.PackOptions()
    pack_options.resolution = int(texture_size)
    pack_options.padding = int(padding)
    pack_options.bilinear = True
    pack_options.blockAlign = True
    pack_options.bruteForce = False
    atlas.generate(chart_options, pack_options)
    if atlas.atlas_count != 1:
        # the estimate overflowed one page: let xatlas choose one page of whatever size it needs
        log.info("xatlas produced %d atlas pages; repacking into one", atlas.atlas_count)
        atlas = xatlas.Atlas()
        atlas.add_mesh(v, f)
        pack_options.resolution = 0
        atlas.generate(chart_options, pack_options)
    vmapping, new_faces, uvs = atlas[0]
    uvs = np.clip(np.asarray(uvs, dtype=np.float32), 0.0, 1.0)
    log.info(
        "xatlas: %d faces -> %d charts, %d vertices, atlas %dx%d, %.1f%% used, %.2f s",
        len(f),
        atlas.chart_count,
        len(vmapping),
        atlas.width,
        atlas.height,
        100.0 * float(np.mean(atlas.utilization)),
        time.perf_counter() - t0,
    )
    vmapping = np.asarray(vmapping, dtype=np.int64)
    return v[vmapping], np.asarray(new_faces, dtype=np.int32), uvs, vmapping
