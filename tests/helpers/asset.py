"""Helpers that measure an exported asset against a known scene: surface samples of a ``.glb`` in the
input's world frame, and the symmetric Chamfer-L1 distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def chamfer_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer-L1: mean of the two mean nearest-neighbour distances."""
    from scipy.spatial import cKDTree

    return 0.5 * (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


def asset_points_in_input_frame(glb: Path, n: int = 20000) -> np.ndarray:
    """Surface samples of an exported asset, mapped from glTF's Y-up back to the input's Z-up frame."""
    import trimesh

    mesh = trimesh.load(glb, force="mesh")
    pts = np.asarray(
        mesh.sample(n, seed=0)
        if "seed" in trimesh.sample.sample_surface.__code__.co_varnames
        else mesh.sample(n)
    )
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    return np.stack([x, -z, y], axis=-1)  # glTF (x, y, z) = input (x, z, -y)
