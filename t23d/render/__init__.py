"""Cameras, rays, empty-space skipping and volume rendering of fields; triangle rasterisation and
mesh rendering (ray casting) used downstream by extraction, baking, export and previews."""
