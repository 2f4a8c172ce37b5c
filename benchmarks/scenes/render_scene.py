"""Render one benchmark scene with Blender (Cycles on CPU). Runs in a Python that has ``bpy``:

    $T23D_BLENDER_PYTHON benchmarks/scenes/render_scene.py JOB.json

``JOB.json`` is written by ``make_scenes.py`` (which computes every camera and per-photo lighting, so
all randomness lives there and is seeded). This script builds the object (``blender_objects.py``),
the lights and optional surroundings, and writes into ``job["out_dir"]``:

- ``<split>/<name>.png``: the photo (RGBA, straight alpha, when the background is transparent; RGB
  when the object stands in a room), 8-bit sRGB (view transform "Standard");
- ``<split>/<name>_albedo.png``: Blender's diffuse-colour pass (the surface's base colour, no
  lighting), sRGB, with the object's coverage as straight alpha (also in a room: the object only);
- ``mesh.ply``: the rendered surface (binary PLY, triangles, world frame, +Z up);
- ``blender_report.json``: Blender version, mesh statistics, per-view seconds.

Lighting: a fixed soft sky (a vertical gradient, ground-brown to pale blue) plus a sun with an 8 degree
disc (soft shadows). Per-photo lighting (``frame["lighting"]``) moves and scales the sun and the sky;
per-photo ``gain`` ([r, g, b], exposure times white balance) multiplies the linear image before the
sRGB encoding (the albedo output is never affected).
"""

from __future__ import annotations

import array
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import bpy  # first: it makes bmesh and mathutils importable

# isort: split
import bmesh
from mathutils import Matrix, Vector

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blender_objects  # noqa: E402


def _reset() -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def _setup_render(sc: bpy.types.Scene, job: dict) -> None:
    sc.render.engine = "CYCLES"
    cy = sc.cycles
    cy.device = "CPU"
    cy.samples = int(job["samples"])
    cy.use_adaptive_sampling = True
    cy.use_denoising = bool(job["denoise"])
    if cy.use_denoising:
        cy.denoiser = "OPENIMAGEDENOISE"
        cy.denoising_input_passes = "RGB_ALBEDO_NORMAL"
        # FAST: no separate denoise of the guide passes (ACCURATE costs ~2 s per 256^2 view on 2 shared
        # cores for +0.3 dB; 16 samples + this reach ~47 dB against a 512-sample render of the duck)
        cy.denoising_prefilter, cy.denoising_quality = "FAST", "HIGH"
    cy.max_bounces, cy.diffuse_bounces, cy.glossy_bounces = 6, 3, 3
    cy.transmission_bounces, cy.transparent_max_bounces = 0, 4
    cy.caustics_reflective = cy.caustics_refractive = False
    r = sc.render
    r.resolution_x = r.resolution_y = int(job["resolution"])
    r.resolution_percentage = 100
    r.film_transparent = job["background"] == "transparent"
    r.threads_mode, r.threads = "FIXED", int(job["threads"])
    r.use_persistent_data = True
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA" if r.film_transparent else "RGB"
    r.image_settings.color_depth = "8"
    sc.view_settings.view_transform = "Standard"
    sc.view_settings.look = "None"
    sc.view_settings.exposure, sc.view_settings.gamma = 0.0, 1.0
    sc.display_settings.display_device = "sRGB"


def _setup_world(sc: bpy.types.Scene) -> bpy.types.Node:
    """Soft sky: a vertical gradient over directions; returns the Background node (strength per photo)."""
    world = bpy.data.worlds.new("sky")
    sc.world = world
    world.use_nodes = True
    world.cycles.sample_map_resolution = 64  # a smooth gradient; a finer map costs seconds per change
    nodes, links = world.node_tree.nodes, world.node_tree.links
    coord = nodes.new("ShaderNodeTexCoord")
    sep = nodes.new("ShaderNodeSeparateXYZ")
    links.new(coord.outputs["Generated"], sep.inputs["Vector"])
    ramp = nodes.new("ShaderNodeValToRGB")
    els = ramp.color_ramp.elements
    els.new(0.5)
    for el, (pos, col) in zip(
        els, ((0.0, (0.3, 0.26, 0.22)), (0.5, (0.85, 0.85, 0.82)), (1.0, (0.7, 0.8, 0.95)))
    ):
        el.position, el.color = pos, (*(blender_objects.srgb_to_linear(c) for c in col), 1.0)
    to01 = nodes.new("ShaderNodeMapRange")  # z in [-1, 1] -> [0, 1]
    to01.inputs["From Min"].default_value, to01.inputs["From Max"].default_value = -1.0, 1.0
    links.new(sep.outputs["Z"], to01.inputs["Value"])
    links.new(to01.outputs["Result"], ramp.inputs["Fac"])
    bg = nodes["Background"]
    links.new(ramp.outputs["Color"], bg.inputs["Color"])
    return bg


def _sun() -> bpy.types.Object:
    data = bpy.data.lights.new("sun", "SUN")
    sun = bpy.data.objects.new("sun", data)
    bpy.context.scene.collection.objects.link(sun)
    return sun


def _set_lighting(sun: bpy.types.Object, sky: bpy.types.Node, light: dict) -> None:
    az, el = math.radians(light["sun_azimuth_deg"]), math.radians(light["sun_elevation_deg"])
    towards_sun = Vector((math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)))
    sun.rotation_mode = "QUATERNION"
    sun.rotation_quaternion = towards_sun.to_track_quat("Z", "Y")  # the light shines down its -Z
    sun.data.energy = float(light["sun_strength"])
    sun.data.angle = math.radians(float(light["sun_angle_deg"]))
    sky.inputs["Strength"].default_value = float(light["sky_strength"])


def _room(floor_z: float) -> None:
    """Surroundings for unmasked photos: a wooden table top under the object and brick walls around."""
    floor = blender_objects.ellipsoid("table", (0.0, 0.0, floor_z - 0.02), (6.0, 6.0, 0.02), segments=64)
    wood, bsdf = blender_objects.principled("wood", 0.6)
    nodes, links = wood.node_tree.nodes, wood.node_tree.links
    wave = nodes.new("ShaderNodeTexWave")
    wave.bands_direction = "X"
    wave.inputs["Scale"].default_value, wave.inputs["Distortion"].default_value = 4.0, 10.0
    wave.inputs["Detail"].default_value, wave.inputs["Detail Scale"].default_value = 8.0, 2.0
    ramp = blender_objects.color_ramp(nodes, [(0.2, (0.45, 0.28, 0.15)), (0.8, (0.7, 0.5, 0.3))])
    links.new(wave.outputs["Fac"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    floor.data.materials.append(wood)
    walls = blender_objects.lathe(
        "walls",
        [(0.0, floor_z - 1.0), (7.0, floor_z - 1.0), (7.0, floor_z + 3.5), (0.0, floor_z + 3.5)],
        steps=96,
    )
    # open the ceiling so the sky and the sun light the room: drop the top fan
    bm = bmesh.new()
    bm.from_mesh(walls.data)
    top = [f for f in bm.faces if min(v.co.z for v in f.verts) > floor_z + 3.4]
    bmesh.ops.delete(bm, geom=top, context="FACES")
    bm.to_mesh(walls.data)
    bm.free()
    brick, bsdf = blender_objects.principled("brick", 0.8)
    nodes, links = brick.node_tree.nodes, brick.node_tree.links
    tex = nodes.new("ShaderNodeTexBrick")
    tex.inputs["Scale"].default_value = 4.0
    tex.inputs["Color1"].default_value = (0.45, 0.12, 0.06, 1.0)
    tex.inputs["Color2"].default_value = (0.25, 0.2, 0.12, 1.0)
    tex.inputs["Mortar"].default_value = (0.6, 0.6, 0.55, 1.0)
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    walls.data.materials.append(brick)


def _compositor(sc: bpy.types.Scene, tmp: Path, room: bool) -> bpy.types.Node:
    """Photo = image x gain; albedo = diffuse-colour pass with the object's coverage as alpha, to a
    File Output node in ``tmp``. Returns the gain (Mix) node."""
    vl = sc.view_layers[0]
    vl.use_pass_diffuse_color = True
    vl.use_pass_object_index = room
    sc.use_nodes = True
    nodes, links = sc.node_tree.nodes, sc.node_tree.links
    nodes.clear()
    rl = nodes.new("CompositorNodeRLayers")
    gain = nodes.new("CompositorNodeMixRGB")
    gain.blend_type = "MULTIPLY"
    gain.inputs["Fac"].default_value = 1.0
    comp = nodes.new("CompositorNodeComposite")
    comp.use_alpha = True
    links.new(rl.outputs["Image"], gain.inputs[1])
    links.new(gain.outputs["Image"], comp.inputs["Image"])
    links.new(rl.outputs["Alpha"], comp.inputs["Alpha"])
    set_alpha = nodes.new("CompositorNodeSetAlpha")
    set_alpha.mode = "REPLACE_ALPHA"
    links.new(rl.outputs["DiffCol"], set_alpha.inputs["Image"])
    if room:
        mask = nodes.new("CompositorNodeIDMask")
        mask.index, mask.use_antialiasing = 1, True
        links.new(rl.outputs["IndexOB"], mask.inputs["ID value"])
        links.new(mask.outputs["Alpha"], set_alpha.inputs["Alpha"])
    else:
        links.new(rl.outputs["Alpha"], set_alpha.inputs["Alpha"])
    out = nodes.new("CompositorNodeOutputFile")
    out.base_path = str(tmp)
    out.format.file_format, out.format.color_mode, out.format.color_depth = "PNG", "RGBA", "8"
    out.file_slots[0].path = "albedo_"
    links.new(set_alpha.outputs["Image"], out.inputs[0])
    return gain


def write_ply(obj: bpy.types.Object, path: Path) -> dict:
    """Binary little-endian PLY of ``obj``'s triangles (world frame); returns mesh statistics."""
    me = obj.data
    me.calc_loop_triangles()
    co = array.array("f", [0.0]) * (3 * len(me.vertices))
    me.vertices.foreach_get("co", co)
    tri = array.array("i", [0]) * (3 * len(me.loop_triangles))
    me.loop_triangles.foreach_get("vertices", tri)
    rows = bytearray()
    for k in range(len(me.loop_triangles)):
        rows += b"\x03" + tri[3 * k : 3 * k + 3].tobytes()
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment t23d benchmark scene: true surface, world frame, +Z up\n"
        f"element vertex {len(me.vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(me.loop_triangles)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    tmp = path.with_suffix(".ply.tmp")
    with open(tmp, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(co.tobytes())
        f.write(bytes(rows))
    os.replace(tmp, path)
    bm = bmesh.new()
    bm.from_mesh(me)
    watertight = all(e.is_manifold for e in bm.edges) and all(not e.is_boundary for e in bm.edges)
    area = sum(f.calc_area() for f in bm.faces)
    bm.free()
    radius = max(Vector(co[3 * i : 3 * i + 3]).length for i in range(len(me.vertices)))
    zs = co[2::3]
    return {
        "vertices": len(me.vertices),
        "triangles": len(me.loop_triangles),
        "watertight": watertight,
        "area": area,
        "max_radius": radius,
        "z_range": [min(zs), max(zs)],
    }


def main(job_path: str) -> None:
    """Build, light and render the scene described by ``job_path``."""
    job = json.loads(Path(job_path).read_text())
    out = Path(job["out_dir"])
    room = job["background"] == "room"
    t_start = time.perf_counter()
    sc = _reset()
    _setup_render(sc, job)
    obj = blender_objects.BUILDERS[job["object"]](int(job["seed"]), job.get("sources", {}))
    obj.pass_index = 1
    mesh_stats = write_ply(obj, out / "mesh.ply")
    sky = _setup_world(sc)
    sun = _sun()
    if room:
        _room(mesh_stats["z_range"][0])
    tmp = out / ".albedo_tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gain = _compositor(sc, tmp, room)
    cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    sc.collection.objects.link(cam)
    sc.camera = cam
    cam.data.sensor_fit = "HORIZONTAL"
    cam.data.angle = math.radians(float(job["fov_deg"]))
    cam.data.clip_start, cam.data.clip_end = 0.05, 100.0
    sc.frame_set(1)
    build_s = time.perf_counter() - t_start
    seconds, current = [], None
    for k, frame in enumerate(job["frames"]):
        t0 = time.perf_counter()
        cam.matrix_world = Matrix(frame["c2w"])
        if frame["lighting"] != current:  # a change re-syncs the world (seconds): only when needed
            _set_lighting(sun, sky, frame["lighting"])
            current = frame["lighting"]
        gain.inputs[2].default_value = (*frame["gain"], 1.0)
        sc.cycles.seed = int(job["seed"]) * 100_003 + k
        photo = out / frame["split"] / f"{frame['name']}.png"
        photo.parent.mkdir(parents=True, exist_ok=True)
        sc.render.filepath = str(photo)
        bpy.ops.render.render(write_still=True)
        written = sorted(tmp.glob("albedo_*.png"))
        if len(written) != 1:
            raise RuntimeError(f"expected one albedo file in {tmp}, found {written}")
        os.replace(written[0], out / frame["split"] / f"{frame['name']}_albedo.png")
        seconds.append(time.perf_counter() - t0)
        print(
            f"T23D-VIEW {k + 1}/{len(job['frames'])} {frame['split']}/{frame['name']} {seconds[-1]:.2f}s",
            flush=True,
        )
    shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "blender": bpy.app.version_string,
        "engine": "CYCLES (CPU)",
        "samples": int(job["samples"]),
        "adaptive_sampling": True,
        "denoiser": "OPENIMAGEDENOISE" if job["denoise"] else None,
        "threads": int(job["threads"]),
        "mesh": mesh_stats,
        "build_s": build_s,
        "view_s": seconds,
        "total_s": time.perf_counter() - t_start,
    }
    (out / "blender_report.json").write_text(json.dumps(report, indent=1))
    print("T23D-DONE " + json.dumps({k: v for k, v in report.items() if k != "view_s"}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
