"""Cameras, rays, empty-space skipping and volume rendering."""
