"""Texture from the field or from the photos, side by side on trained reconstruct runs (no retraining).

Each run is re-exported once per variant, in this process, into ``--out/<scene>/<variant>``, and the
``.glb`` is measured as ``bench_reconstruct.py`` measures it (PSNR at the scene's unseen test views,
Chamfer-L1 against the true surface). Variants: ``field`` (the colour field baked) and ``photos:K``
(the training photos projected, the K best per texel; :mod:`t23d.texture.photos`), ``photos:K:raw``
(the same without matching each photo's exposure to the field's colours).

    PYTHONPATH=. python benchmarks/bench_texture_source.py \\
        --run /tmp/t23d-bench/runs/duck/<run>:/work/bench-data/duck --variants field photos:1 photos:3

Prints a markdown table with the load average; writes ``--out/texture_source.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.asset_metrics import glb_metrics, sample_points  # noqa: E402


def parse_variant(text: str) -> dict:
    """``field``, ``photos:K`` or ``photos:K:raw`` (no exposure matching) -> export overrides."""
    if text == "field":
        return {"texture_source": "field"}
    kind, _, rest = text.partition(":")
    k, _, raw = rest.partition(":")
    if kind != "photos" or raw not in ("", "raw"):
        raise SystemExit(f"unknown variant {text!r}; expected field, photos:K or photos:K:raw")
    return {"texture_source": "photos", "photo_top_k": int(k or 3), "photo_match_exposure": raw != "raw"}


def main(argv: list[str] | None = None) -> None:
    import torch

    from t23d.reconstruct.run import export_reconstruct_run, load_reconstruct_state

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="RUN_DIR:SCENE_DIR (repeatable)")
    ap.add_argument("--variants", nargs="+", default=["field", "photos:3"])
    ap.add_argument("--out", type=Path, default=Path("/tmp/t23d-bench/texture-source"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for spec in args.run:
        run_text, _, scene_text = spec.partition(":")
        run_dir, scene_dir = Path(run_text), Path(scene_text)
        record = json.loads((scene_dir / "scene.json").read_text())
        truth = sample_points(scene_dir / record["gt"]["path"], 100_000, seed=3)
        cfg, state = load_reconstruct_state(run_dir, torch.device("cpu"))
        for variant in args.variants:
            export_cfg = dataclasses.replace(cfg.export, **parse_variant(variant))
            out = args.out / scene_dir.name / variant.replace(":", "-")
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            report = export_reconstruct_run(run_dir, cfg, state, export_cfg, out)
            seconds = time.perf_counter() - t0
            asset = glb_metrics(Path(report["asset_path"]), scene_dir, truth)
            row = {
                "scene": scene_dir.name,
                "variant": variant,
                "glb_psnr": asset["glb_psnr"],
                "chamfer_l1": asset["chamfer_l1"],
                "fidelity_image_psnr": (report.get("fidelity") or {}).get("image_psnr"),
                "photo_texture": report.get("photo_texture"),
                "export_s": round(seconds, 1),
                "load": round(load, 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "texture_source.json").write_text(json.dumps(rows, indent=2))
    print(
        "| scene | texture | .glb PSNR (dB) | Chamfer-L1 | fidelity image (dB) | covered | export s | load |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        covered = (r["photo_texture"] or {}).get("covered")
        print(
            f"| {r['scene']} | {r['variant']} | {r['glb_psnr']:.2f} | {r['chamfer_l1']:.4f} | "
            f"{r['fidelity_image_psnr'] or float('nan'):.2f} | "
            f"{'' if covered is None else f'{covered:.3f}'} | {r['export_s']} | {r['load']} |"
        )


if __name__ == "__main__":
    main()
