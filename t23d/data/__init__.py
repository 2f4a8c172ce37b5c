"""Photo datasets and camera formats: nerfstudio, Blender synthetic, COLMAP, raw photos (SfM).

Conventions: camera-to-world 4x4 poses in the OpenGL convention (camera looks down -Z, +Y up,
+X right); pinhole intrinsics ``fx, fy, cx, cy`` in pixels with pixel centres at +0.5; images as
sRGB float in [0, 1]. See :mod:`t23d.data.dataset` for the loaded form and
:mod:`t23d.data.synthetic` for the analytic test/benchmark scene generator.
"""

from t23d.data.config import DataConfig, SfmConfig
from t23d.data.dataset import PhotoDataset, detect_format, load_dataset

__all__ = ["DataConfig", "PhotoDataset", "SfmConfig", "detect_format", "load_dataset"]
