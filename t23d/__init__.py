"""t23d: text prompt or photos -> game-ready textured glTF 2.0 asset.

Importing this package is cheap: torch, diffusers and the mesh libraries are imported by the
subpackages that use them, never here.

Conventions used across the package (each module repeats the ones it relies on):
- World frame: right-handed, **+Z up**, units are the field's units (SDS scenes live in the cube
  ``[-bound, bound]^3``; photo scenes in a normalised frame whose transform back to the input's
  world is recorded). Export converts to glTF's +Y up, metres.
- Cameras: camera-to-world 4x4 matrices in the **OpenGL** convention (camera looks down -Z, +Y up,
  +X right), as nerfstudio and Blender use.
- Colour: fields, renders and textures hold **sRGB-encoded** values in [0, 1], as photos and the 2D
  diffusion priors do; glTF's baseColorTexture is sRGB too, so export writes them unchanged.
"""

__version__ = "0.1.0"
