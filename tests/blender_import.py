"""Import a glTF asset with Blender's own importer and print what Blender built, as JSON.

Run with a Python that has ``bpy`` (Blender as a module; pip ``bpy``, Python 3.11), e.g.::

    $T23D_BLENDER_PYTHON tests/blender_import.py ASSET.glb
"""

from __future__ import annotations

import json
import os
import sys

import bpy

bpy.ops.wm.read_factory_settings(use_empty=True)
result = bpy.ops.import_scene.gltf(filepath=sys.argv[1])
meshes = []
for obj in bpy.data.objects:
    if obj.type != "MESH":
        continue
    me = obj.data
    corners = [obj.matrix_world @ v.co for v in me.vertices]
    mats = []
    for mat in me.materials:
        bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        base = bsdf.inputs["Base Color"]
        linked = [link.from_node for link in base.links]
        image = linked[0].image if linked and linked[0].type == "TEX_IMAGE" else None
        normal_map = None
        normal_links = [link.from_node for link in bsdf.inputs["Normal"].links]
        if normal_links and normal_links[0].type == "NORMAL_MAP":
            node = normal_links[0]
            tex = [link.from_node for link in node.inputs["Color"].links]
            img = tex[0].image if tex and tex[0].type == "TEX_IMAGE" else None
            normal_map = {
                "space": node.space,
                "uv_map": node.uv_map,
                "image": None
                if img is None
                else {"size": list(img.size), "colorspace": img.colorspace_settings.name},
            }
        mats.append(
            {
                "name": mat.name,
                "metallic": bsdf.inputs["Metallic"].default_value,
                "roughness": bsdf.inputs["Roughness"].default_value,
                "base_color_image": None
                if image is None
                else {"size": list(image.size), "colorspace": image.colorspace_settings.name},
                "normal_map": normal_map,
            }
        )
    meshes.append(
        {
            "name": obj.name,
            "polygons": len(me.polygons),
            "uv_layers": [uv.name for uv in me.uv_layers],
            "materials": mats,
            "bbox": [
                [min(c[i] for c in corners) for i in range(3)],
                [max(c[i] for c in corners) for i in range(3)],
            ],
        }
    )
print(
    "T23D-JSON " + json.dumps({"result": sorted(result), "version": bpy.app.version_string, "meshes": meshes})
)
# bpy 4.2 as a module segfaults in its interpreter-shutdown teardown after an import (the work is done
# and printed by then); leave without running it, so the exit status means what the import did
sys.stdout.flush()
os._exit(0)
