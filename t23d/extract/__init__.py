"""Density grid -> mesh: chunked grid evaluation, automatic threshold, marching cubes, cleanup."""

from t23d.extract.grid import DensityFn, DensityGrid, auto_threshold, evaluate_density_grid
from t23d.extract.mesh import ExtractSettings, extract_mesh, vertex_normals

__all__ = [
    "DensityFn",
    "DensityGrid",
    "ExtractSettings",
    "auto_threshold",
    "evaluate_density_grid",
    "extract_mesh",
    "vertex_normals",
]
