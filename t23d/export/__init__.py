"""Asset export: glTF 2.0 (GLB / .gltf), OBJ, PLY, preview render and fidelity report.

The public entry point is :func:`export_asset`; it takes plain callables (``density_fn``,
``color_fn``, optionally ``render_field_fn``) and tensors, never a trainer.
"""

from t23d.export.config import ExportConfig, validate_export_config
from t23d.export.fidelity import FidelityReport, RenderFieldFn
from t23d.export.naming import slugify
from t23d.export.pipeline import ExportReport, export_asset

__all__ = [
    "ExportConfig",
    "ExportReport",
    "FidelityReport",
    "RenderFieldFn",
    "export_asset",
    "slugify",
    "validate_export_config",
]
