"""The benchmark objects, built in Blender (runs inside a Python that has ``bpy``; see ``render_scene.py``).

Every builder returns one watertight mesh object in t23d's world frame (+Z up, the front facing -Y),
with its transforms applied (object coordinates = world coordinates), centred on its bounding box and
scaled so that its farthest vertex is at ``NORMALISED_RADIUS`` from the origin. Surface colours are
Principled BSDF materials whose base colour is flat or procedural in object coordinates (no UVs), so
Blender's diffuse-colour pass is the ground-truth albedo. Parts that overlap (the duck's beak, the
teapot's spout and handle, Suzanne's eyes) are fused by a voxel remesh into one outer surface, and
each face takes the material of the nearest original part, so the mesh written as ground truth is
exactly the surface that is rendered, with no hidden inner shells.

Colours are given in sRGB and converted to Blender's linear scene colours here.
"""

from __future__ import annotations

import json
import math

import bpy  # first: it makes bmesh and mathutils importable

# isort: split
import bmesh
from mathutils import Matrix, Vector
from mathutils.bvhtree import BVHTree

NORMALISED_RADIUS = 0.95
"""Distance of the farthest surface point from the origin (inside t23d's radius-1 object sphere)."""
VOXEL_SIZE = 0.006
"""Voxel remesh size in normalised units (finer than a pixel: ~0.0097 at distance 3, 45 deg, 256 px)."""
MAX_FACES = 200_000
"""Triangle budget of the final mesh (decimated down to it after the remesh)."""


def srgb_to_linear(c: float) -> float:
    """One sRGB-encoded channel in [0, 1] -> linear."""
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _rgba(srgb: tuple[float, float, float]) -> tuple[float, float, float, float]:
    return (*(srgb_to_linear(c) for c in srgb), 1.0)


# ------------------------------------------------------------------ mesh helpers
def _link(obj: bpy.types.Object) -> bpy.types.Object:
    bpy.context.scene.collection.objects.link(obj)
    return obj


def mesh_object(name: str, verts: list, faces: list) -> bpy.types.Object:
    """A new mesh object linked to the scene, with outward-facing normals."""
    me = bpy.data.meshes.new(name)
    me.from_pydata([tuple(v) for v in verts], [], [tuple(f) for f in faces])
    bm = bmesh.new()
    bm.from_mesh(me)
    bmesh.ops.recalc_face_normals(bm, faces=bm.faces)
    bm.to_mesh(me)
    bm.free()
    return _link(bpy.data.objects.new(name, me))


def apply_modifiers(obj: bpy.types.Object) -> bpy.types.Object:
    """Replace ``obj``'s data by its evaluated mesh (modifiers applied, metaballs converted)."""
    dg = bpy.context.evaluated_depsgraph_get()
    me = bpy.data.meshes.new_from_object(obj.evaluated_get(dg))
    new = _link(bpy.data.objects.new(obj.name + "_mesh", me))
    new.matrix_world = obj.matrix_world.copy()
    bpy.data.objects.remove(obj)
    return new


def apply_transform(obj: bpy.types.Object) -> None:
    """Bake ``obj.matrix_world`` into its vertices (world = object coordinates afterwards)."""
    obj.data.transform(obj.matrix_world)
    obj.matrix_world = Matrix.Identity(4)


def join(objs: list[bpy.types.Object], name: str) -> bpy.types.Object:
    """One mesh object holding all ``objs`` (world coordinates); the inputs are removed."""
    bm = bmesh.new()
    for o in objs:
        me = o.data.copy()
        me.transform(o.matrix_world)
        bm.from_mesh(me)
        bpy.data.meshes.remove(me)
        bpy.data.objects.remove(o)
    me = bpy.data.meshes.new(name)
    bm.to_mesh(me)
    bm.free()
    return _link(bpy.data.objects.new(name, me))


def normalise(obj: bpy.types.Object, radius: float = NORMALISED_RADIUS) -> None:
    """Centre the bounding box at the origin and scale the farthest vertex to ``radius``."""
    apply_transform(obj)
    vs = [v.co for v in obj.data.vertices]
    lo = Vector([min(v[i] for v in vs) for i in range(3)])
    hi = Vector([max(v[i] for v in vs) for i in range(3)])
    centre = (lo + hi) / 2
    far = max((v - centre).length for v in vs)
    obj.data.transform(Matrix.Scale(radius / far, 4) @ Matrix.Translation(-centre))


def remesh(obj: bpy.types.Object, voxel: float = VOXEL_SIZE, max_faces: int = MAX_FACES) -> bpy.types.Object:
    """Voxel remesh (one closed outer surface, inner parts removed), then decimate to ``max_faces``."""
    mod = obj.modifiers.new("remesh", "REMESH")
    mod.mode, mod.voxel_size, mod.use_smooth_shade = "VOXEL", voxel, True
    obj = apply_modifiers(obj)
    return decimate(obj, max_faces)


def decimate(obj: bpy.types.Object, max_faces: int = MAX_FACES) -> bpy.types.Object:
    """Collapse-decimate to at most ``max_faces`` triangles (no-op when already below)."""
    tris = sum(len(p.vertices) - 2 for p in obj.data.polygons)
    if tris > max_faces:
        mod = obj.modifiers.new("decimate", "DECIMATE")
        mod.ratio = max_faces / tris
        obj = apply_modifiers(obj)
    return obj


def world_mesh(obj: bpy.types.Object) -> bpy.types.Mesh:
    """A copy of ``obj``'s mesh in world coordinates."""
    me = obj.data.copy()
    me.transform(obj.matrix_world)
    return me


def assign_nearest(obj: bpy.types.Object, parts: list[tuple[bpy.types.Mesh, int]]) -> None:
    """Give each face of ``obj`` the material index of the nearest of ``parts`` (world mesh, index)."""
    trees = []
    for me, index in parts:
        bm = bmesh.new()
        bm.from_mesh(me)
        trees.append((BVHTree.FromBMesh(bm), index))
        bm.free()
    for poly in obj.data.polygons:
        best = min(trees, key=lambda t: t[0].find_nearest(poly.center)[3] or 1e9)
        poly.material_index = best[1]


def lathe(
    name: str, profile: list[tuple[float, float]], steps: int = 160, materials: list[int] | None = None
) -> bpy.types.Object:
    """Closed surface of revolution about +Z of a profile ``[(r, z)]`` that starts and ends on the axis;
    ``materials[i]`` is the material index of the band swept by profile segment ``i``."""
    if profile[0][0] != 0 or profile[-1][0] != 0:
        raise ValueError("a lathe profile must start and end on the axis (r = 0)")
    verts, rings = [(0.0, 0.0, profile[0][1])], []
    for r, z in profile[1:-1]:
        rings.append(len(verts))
        for j in range(steps):
            a = 2 * math.pi * j / steps
            verts.append((r * math.cos(a), r * math.sin(a), z))
    verts.append((0.0, 0.0, profile[-1][1]))
    top = len(verts) - 1
    faces = [(0, rings[0] + (j + 1) % steps, rings[0] + j) for j in range(steps)]
    for a, b in zip(rings[:-1], rings[1:]):
        faces += [(a + j, a + (j + 1) % steps, b + (j + 1) % steps, b + j) for j in range(steps)]
    faces += [(rings[-1] + j, rings[-1] + (j + 1) % steps, top) for j in range(steps)]
    obj = mesh_object(name, verts, faces)
    if materials is not None:
        per_face = [m for m in materials for _ in range(steps)]
        obj.data.polygons.foreach_set("material_index", per_face)
    return obj


def tube(name: str, centres: list[Vector], radii: list[float], ring: int = 24) -> bpy.types.Object:
    """Closed tube (capped) along a polyline of ``centres`` with per-point ``radii``."""
    verts, faces = [], []
    up = Vector((0.0, 0.0, 1.0))
    for i, c in enumerate(centres):
        t = (centres[min(i + 1, len(centres) - 1)] - centres[max(i - 1, 0)]).normalized()
        ref = up if abs(t.dot(up)) < 0.9 else Vector((1.0, 0.0, 0.0))
        u = t.cross(ref).normalized()
        v = t.cross(u)
        for j in range(ring):
            a = 2 * math.pi * j / ring
            verts.append(tuple(c + radii[i] * (math.cos(a) * u + math.sin(a) * v)))
    n = len(centres)
    for i in range(n - 1):
        a, b = i * ring, (i + 1) * ring
        faces += [(a + j, a + (j + 1) % ring, b + (j + 1) % ring, b + j) for j in range(ring)]
    faces.append(tuple(range(ring))[::-1])
    faces.append(tuple(range((n - 1) * ring, n * ring)))
    return mesh_object(name, verts, faces)


def ellipsoid(name: str, centre: tuple, scale: tuple, segments: int = 48) -> bpy.types.Object:
    """A UV-sphere ellipsoid."""
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=segments, v_segments=segments // 2, radius=1.0)
    me = bpy.data.meshes.new(name)
    bm.to_mesh(me)
    bm.free()
    obj = _link(bpy.data.objects.new(name, me))
    obj.matrix_world = Matrix.Translation(centre) @ Matrix.Diagonal((*scale, 1.0))
    return obj


# ------------------------------------------------------------------ materials
def principled(name: str, roughness: float, color: tuple | None = None) -> tuple[bpy.types.Material, object]:
    """A Principled BSDF material (dielectric); returns it and its BSDF node."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = roughness
    if color is not None:
        bsdf.inputs["Base Color"].default_value = _rgba(color)
    return mat, bsdf


def color_ramp(nodes, stops: list[tuple[float, tuple]]):
    """A ColorRamp node with ``stops`` [(position, sRGB colour)]."""
    ramp = nodes.new("ShaderNodeValToRGB")
    els = ramp.color_ramp.elements
    while len(els) < len(stops):
        els.new(0.5)
    for el, (pos, col) in zip(els, stops):
        el.position, el.color = pos, _rgba(col)
    return ramp


def _object_coords(nodes):
    return nodes.new("ShaderNodeTexCoord").outputs["Object"]


def painted_porcelain(name: str) -> bpy.types.Material:
    """White glazed porcelain with blue bands and dots (the teapot's paint)."""
    mat, bsdf = principled(name, 0.3)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    co = _object_coords(nodes)
    wave = nodes.new("ShaderNodeTexWave")
    wave.wave_type, wave.bands_direction = "BANDS", "Z"
    wave.inputs["Scale"].default_value, wave.inputs["Distortion"].default_value = 2.2, 6.0
    links.new(co, wave.inputs["Vector"])
    vor = nodes.new("ShaderNodeTexVoronoi")
    vor.inputs["Scale"].default_value = 9.0
    links.new(co, vor.inputs["Vector"])
    bands = color_ramp(nodes, [(0.45, (0.93, 0.92, 0.88)), (0.55, (0.12, 0.25, 0.62))])
    links.new(wave.outputs["Fac"], bands.inputs["Fac"])
    dots = color_ramp(nodes, [(0.16, (0.08, 0.18, 0.5)), (0.2, (1.0, 1.0, 1.0))])
    links.new(vor.outputs["Distance"], dots.inputs["Fac"])
    mix = nodes.new("ShaderNodeMix")
    mix.data_type, mix.blend_type = "RGBA", "MULTIPLY"
    mix.inputs["Factor"].default_value = 1.0
    links.new(bands.outputs["Color"], mix.inputs["A"])
    links.new(dots.outputs["Color"], mix.inputs["B"])
    links.new(mix.outputs["Result"], bsdf.inputs["Base Color"])
    return mat


def speckled(
    name: str, base: tuple, speck: tuple, roughness: float, scale: float = 40.0
) -> bpy.types.Material:
    """A glazed colour with fine darker speckles and a slow variation (the bowl's outside)."""
    mat, bsdf = principled(name, roughness)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    co = _object_coords(nodes)
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value, noise.inputs["Detail"].default_value = scale, 2.0
    links.new(co, noise.inputs["Vector"])
    ramp = color_ramp(nodes, [(0.58, base), (0.66, speck)])
    links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def ringed(name: str) -> bpy.types.Material:
    """Cream glaze with concentric blue rings around +Z (the bowl's inside)."""
    mat, bsdf = principled(name, 0.35)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    co = _object_coords(nodes)
    wave = nodes.new("ShaderNodeTexWave")
    wave.wave_type, wave.rings_direction = "RINGS", "Z"
    wave.inputs["Scale"].default_value, wave.inputs["Distortion"].default_value = 2.0, 1.5
    links.new(co, wave.inputs["Vector"])
    ramp = color_ramp(nodes, [(0.7, (0.95, 0.9, 0.78)), (0.8, (0.2, 0.35, 0.7))])
    links.new(wave.outputs["Fac"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def colourful(name: str) -> bpy.types.Material:
    """Fine multi-colour texture everywhere: noise through a colour palette, darkened by cells."""
    mat, bsdf = principled(name, 0.6)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    co = _object_coords(nodes)
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value, noise.inputs["Detail"].default_value = 3.0, 6.0
    links.new(co, noise.inputs["Vector"])
    palette = [
        (0.0, (0.85, 0.25, 0.2)), (0.3, (0.95, 0.75, 0.2)), (0.45, (0.25, 0.65, 0.3)),
        (0.6, (0.2, 0.4, 0.85)), (0.8, (0.6, 0.25, 0.7)), (1.0, (0.95, 0.95, 0.9)),
    ]  # fmt: skip
    ramp = color_ramp(nodes, palette)
    links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    vor = nodes.new("ShaderNodeTexVoronoi")
    vor.inputs["Scale"].default_value = 14.0
    links.new(co, vor.inputs["Vector"])
    shade = color_ramp(nodes, [(0.0, (0.35, 0.35, 0.35)), (0.5, (1.0, 1.0, 1.0))])
    links.new(vor.outputs["Distance"], shade.inputs["Fac"])
    mix = nodes.new("ShaderNodeMix")
    mix.data_type, mix.blend_type = "RGBA", "MULTIPLY"
    mix.inputs["Factor"].default_value = 1.0
    links.new(ramp.outputs["Color"], mix.inputs["A"])
    links.new(shade.outputs["Color"], mix.inputs["B"])
    links.new(mix.outputs["Result"], bsdf.inputs["Base Color"])
    return mat


# ------------------------------------------------------------------ the objects
def build_duck(seed: int, sources: dict) -> bpy.types.Object:
    """A rubber duck: metaball body, head and tail (one flat yellow) and an orange beak; slightly glossy."""
    mb = bpy.data.metaballs.new("duck")
    mb.resolution = mb.render_resolution = 0.03
    mb.threshold = 0.6
    for co, radius, size in (
        ((0.0, 0.05, 0.0), 1.6, (0.72, 1.0, 0.55)),  # body, long along Y (front is -Y)
        ((0.0, -0.5, 0.8), 1.1, (1.0, 1.0, 1.0)),  # head
        ((0.0, 0.75, 0.35), 0.8, (0.5, 0.6, 0.8)),  # tail
    ):
        el = mb.elements.new(type="ELLIPSOID")
        el.co, el.radius = co, radius
        el.size_x, el.size_y, el.size_z = size
    body = apply_modifiers(_link(bpy.data.objects.new("duck_body", mb)))
    # the beak sticks out of the front of the head, half buried
    me = world_mesh(body)
    bm = bmesh.new()
    bm.from_mesh(me)
    front = BVHTree.FromBMesh(bm).ray_cast(Vector((0.0, -5.0, 0.72)), Vector((0.0, 1.0, 0.0)))[0]
    bm.free()
    bpy.data.meshes.remove(me)
    beak = ellipsoid("beak", tuple(front + Vector((0.0, -0.08, 0.0))), (0.24, 0.26, 0.08))
    parts = [(world_mesh(body), 0), (world_mesh(beak), 1)]
    obj = fuse(join([body, beak], "duck"), parts)
    yellow, _ = principled("duck_yellow", 0.3, (0.98, 0.8, 0.12))
    orange, _ = principled("duck_orange", 0.3, (0.95, 0.42, 0.06))
    return finish(obj, [yellow, orange])


def build_statue(seed: int, sources: dict) -> bpy.types.Object:
    """The Stanford bunny (npm ``bunny``), subdivided and given a fine stone relief by displacement;
    one matte uniform albedo."""
    data = json.loads(open(sources["bunny"]).read())
    verts = [(x, -z, y) for x, y, z in data["positions"]]  # Y-up scan -> +Z up
    obj = mesh_object("bunny", verts, data["cells"])
    obj.matrix_world = Matrix.Rotation(math.radians(-90.0), 4, "Z")  # face -Y
    apply_transform(obj)
    normalise(obj)
    sub = obj.modifiers.new("subsurf", "SUBSURF")
    sub.levels = sub.render_levels = 2
    tex = bpy.data.textures.new("relief", "CLOUDS")
    tex.noise_scale, tex.noise_depth, tex.noise_basis = 0.04, 2, "VORONOI_F2"
    disp = obj.modifiers.new("relief", "DISPLACE")
    disp.texture, disp.strength, disp.mid_level, disp.texture_coords = tex, 0.012, 0.5, "GLOBAL"
    obj = apply_modifiers(obj)
    normalise(obj)
    stone, _ = principled("stone", 0.85, (0.74, 0.7, 0.63))
    return finish(decimate(obj), [stone])


def _teapot_body_profile() -> list[tuple[float, float]]:
    pts = [(0.0, 0.0), (0.46, 0.0), (0.5, 0.02)]
    for k in range(1, 25):  # belly: r = 0.5 -> 0.8 -> 0.5 over z 0.02 -> 0.78
        t = k / 24
        pts.append((0.5 + 0.32 * math.sin(math.pi * t) ** 0.8 - 0.02 * t, 0.02 + 0.76 * t))
    pts += [(0.5, 0.81), (0.44, 0.82)]  # the lid's seat
    for k in range(1, 13):  # lid dome
        a = 0.5 * math.pi * k / 12
        pts.append((0.44 * math.cos(a), 0.82 + 0.16 * math.sin(a)))
    pts[-1] = (0.06, 0.98)
    pts += [(0.09, 1.02), (0.08, 1.07), (0.0, 1.08)]  # knob
    return pts


def build_teapot(seed: int, sources: dict) -> bpy.types.Object:
    """A teapot made here: a lathed body and lid, a thin curved spout and a thin ring handle; glazed
    porcelain painted with blue bands and dots."""
    body = lathe("teapot_body", _teapot_body_profile())
    p0, p1, p2 = Vector((0.0, -0.55, 0.3)), Vector((0.0, -1.05, 0.35)), Vector((0.0, -1.22, 0.85))
    n = 28
    spout_c = [(1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t * t * p2 for t in (k / n for k in range(n + 1))]
    spout = tube("spout", spout_c, [0.13 - 0.085 * k / n for k in range(n + 1)])
    arc = [math.radians(-120 + 240 * k / 40) for k in range(41)]
    centre, big = Vector((0.0, 0.78, 0.42)), 0.3
    handle_c = [centre + Vector((0.0, big * math.sin(a), big * math.cos(a) * 1.15)) for a in arc]
    handle = tube("handle", handle_c, [0.045] * len(handle_c))
    obj = fuse(join([body, spout, handle], "teapot"), [])
    return finish(obj, [painted_porcelain("porcelain")])


def _bowl_profile() -> tuple[list[tuple[float, float]], int]:
    """Profile of a thick-walled bowl (foot, outer wall, rounded rim, inner wall, floor) and the index
    of the first inner-surface point."""
    pts = [(0.0, 0.0), (0.42, 0.0), (0.45, 0.03), (0.43, 0.08)]
    for k in range(1, 25):  # outer wall: quarter ellipse from (0.43, 0.08) to (1.0, 0.62)
        a = 0.5 * math.pi * k / 24
        pts.append((0.43 + 0.57 * math.sin(a), 0.62 - 0.54 * math.cos(a)))
    for k in range(1, 9):  # rounded rim, outer -> inner
        a = math.pi * k / 8
        pts.append((0.975 + 0.025 * math.cos(a), 0.62 + 0.025 * math.sin(a)))
    first_inner = len(pts)
    for k in range(1, 25):  # inner wall down to the floor
        a = 0.5 * math.pi * k / 24
        pts.append((0.0 + 0.95 * math.cos(a), 0.62 - 0.5 * math.sin(a)))
    pts[-1] = (0.0, 0.12)
    return pts, first_inner


def build_bowl(seed: int, sources: dict) -> bpy.types.Object:
    """A thick-walled bowl whose inside is seen from above: terracotta speckled outside, cream with
    blue rings inside (two-tone, textured)."""
    profile, first_inner = _bowl_profile()
    segments = len(profile) - 1
    obj = lathe("bowl", profile, materials=[0 if i < first_inner - 1 else 1 for i in range(segments)])
    normalise(obj)
    outside = speckled("terracotta", (0.72, 0.33, 0.2), (0.35, 0.16, 0.1), 0.5)
    return finish(obj, [outside, ringed("inside")])


def build_monkey(seed: int, sources: dict) -> bpy.types.Object:
    """Suzanne, subdivided and fused into one surface, with a fine colourful texture everywhere."""
    bpy.ops.mesh.primitive_monkey_add(size=2.0)
    obj = bpy.context.active_object
    sub = obj.modifiers.new("subsurf", "SUBSURF")
    sub.levels = sub.render_levels = 2
    obj = fuse(apply_modifiers(obj), [])
    return finish(obj, [colourful("palette")])


def _candlestick_profile() -> tuple[list[tuple[float, float]], int]:
    """Profile of a candlestick (a foot that flares out into the table, a thin stem with a knop, a drip
    pan and a candle) and the index of the first point of the candle."""
    pts = [(0.0, 0.0), (0.62, 0.0), (0.64, 0.02), (0.62, 0.045)]
    for k in range(1, 17):  # the flared foot: concave, r = 0.6 -> 0.09 over z 0.045 -> 0.42
        t = k / 16
        pts.append((0.09 + 0.53 * (1 - t) ** 2.5, 0.045 + 0.375 * t))
    pts.append((0.09, 0.62))  # stem
    for k in range(1, 12):  # knop: a bulge r 0.09 -> 0.17 -> 0.09 over z 0.62 -> 0.82
        a = math.pi * k / 12
        pts.append((0.09 + 0.08 * math.sin(a), 0.72 - 0.1 * math.cos(a)))
    pts += [(0.09, 0.82), (0.08, 1.12)]  # upper stem
    pts += [(0.34, 1.17), (0.36, 1.2), (0.33, 1.215), (0.13, 1.2)]  # drip pan, its top a shallow dish
    first_candle = len(pts)
    pts += [(0.11, 1.21), (0.11, 1.68), (0.07, 1.71), (0.0, 1.72)]  # the candle
    return pts, first_candle


def build_candlestick(seed: int, sources: dict) -> bpy.types.Object:
    """A candlestick made here: a lathed foot that flares out into the table, a thin stem with a knop and
    a drip pan (painted glazed ceramic) holding a cream candle."""
    profile, first_candle = _candlestick_profile()
    segments = len(profile) - 1
    obj = lathe("candlestick", profile, materials=[0 if i < first_candle - 1 else 1 for i in range(segments)])
    normalise(obj)
    wax, _ = principled("wax", 0.7, (0.93, 0.88, 0.74))
    return finish(obj, [painted_porcelain("candlestick_paint"), wax])


def fuse(obj: bpy.types.Object, parts: list[tuple[bpy.types.Mesh, int]]) -> bpy.types.Object:
    """Normalise ``obj`` (and the world-frame part meshes with it), voxel-remesh it into one outer
    surface and give each face the material index of its nearest part; the part meshes are removed."""
    apply_transform(obj)
    vs = [v.co for v in obj.data.vertices]
    lo = Vector([min(v[i] for v in vs) for i in range(3)])
    hi = Vector([max(v[i] for v in vs) for i in range(3)])
    centre = (lo + hi) / 2
    m = Matrix.Scale(NORMALISED_RADIUS / max((v - centre).length for v in vs), 4) @ Matrix.Translation(
        -centre
    )
    obj.data.transform(m)
    for me, _ in parts:
        me.transform(m)
    obj = remesh(obj)
    if parts:
        assign_nearest(obj, parts)
    for me, _ in parts:
        bpy.data.meshes.remove(me)
    return obj


def finish(obj: bpy.types.Object, materials: list[bpy.types.Material]) -> bpy.types.Object:
    """Attach ``materials`` (in material-index order) and shade smooth."""
    for m in materials:
        obj.data.materials.append(m)
    obj.data.polygons.foreach_set("use_smooth", [True] * len(obj.data.polygons))
    return obj


BUILDERS = {
    "duck": build_duck,
    "statue": build_statue,
    "teapot": build_teapot,
    "bowl": build_bowl,
    "monkey": build_monkey,
    "candlestick": build_candlestick,
}
"""Object name -> builder ``(seed, sources) -> object``; ``sources`` maps a downloaded source name to a
JSON file (``{"positions": [[x, y, z]], "cells": [[i, j, k]]}``)."""
