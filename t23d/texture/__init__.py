"""UV unwrapping (xatlas) and texture baking of colour fields."""

from t23d.texture.bake import ColorFn, ColorMode, bake_texture, check_texture_size
from t23d.texture.unwrap import unwrap_uv

__all__ = ["ColorFn", "ColorMode", "bake_texture", "check_texture_size", "unwrap_uv"]
