"""Asset export: glTF 2.0 (GLB / .gltf), OBJ, PLY, preview render and fidelity report.

The public entry points are :func:`export_asset` (a field: extraction, then the asset) and
:func:`export_mesh_asset` (an explicit mesh, e.g. a refined one); they take plain callables
(``density_fn``, ``color_fn``, optionally ``render_field_fn``) and arrays, never a trainer.
"""

from t23d.export.config import ExportConfig, validate_export_config
from t23d.export.fidelity import FidelityReport, RenderFieldFn
from t23d.export.naming import slugify
from t23d.export.pipeline import ExportReport, export_asset, export_mesh_asset

__all__ = [
    "ExportConfig",
    "ExportReport",
    "FidelityReport",
    "RenderFieldFn",
    "export_asset",
    "export_mesh_asset",
    "slugify",
    "validate_export_config",
]
