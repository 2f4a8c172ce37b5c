"""t23d's held-out-style benchmark scene set: objects nobody tuned t23d on, photographed the way the
people who judge it do (Blender renders, 100 views at 256^2, RGBA, Blender-synthetic layout).

- ``layout.py``: objects, cameras, per-photo lighting, transforms and ``scene.json`` (pure Python; tested
  in ``tests/benchmarks``).
- ``make_scenes.py``: the command that renders scenes (``--help`` documents every option).
- ``render_scene.py`` and ``blender_objects.py``: run inside Blender's Python (``bpy``), never imported
  by t23d or its tests.

The rendered data lives outside the repository (default ``/work/bench-data/<scene>``) and is
deterministic from the seed; ``benchmarks/bench_reconstruct.py`` runs ``t23d reconstruct`` on it.
"""
