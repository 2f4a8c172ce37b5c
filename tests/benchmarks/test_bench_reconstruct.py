"""The reconstruct benchmark harness: its options, and (slow, opt-in) one whole run on a tiny scene set."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_reconstruct import build_parser, discover_scenes


def test_options_of_the_set_mode():
    args = build_parser().parse_args(["--scenes", "duck", "boxsphere", "--clock", "cpu", "--preset", "fast"])
    assert args.mode == "set" and args.scenes == ["duck", "boxsphere"] and args.clock == "cpu"
    assert args.minutes is None  # resolved per mode: 13 for the set, 10 for milestones
    assert build_parser().parse_args([]).clock == "wall"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--clock", "sundial"])


def test_unknown_scene_names_list_what_exists(tmp_path):
    with pytest.raises(SystemExit, match="available: none"):
        discover_scenes(tmp_path, ["duck"])


@pytest.mark.slow
def test_harness_runs_t23d_reconstruct_on_a_tiny_set_and_reports(tmp_path):
    from benchmarks.bench_reconstruct import main as bench_main
    from benchmarks.scenes.make_scenes import main as make_main

    make_main(["boxsphere", "--out", str(tmp_path / "set"), "--views", "12", "--test-views", "2",
               "--val-views", "0", "--resolution", "48"])  # fmt: skip
    ((name, folder, record),) = discover_scenes(tmp_path / "set", None)
    assert name == "boxsphere-views12-px48" and record["gt"]["kind"] == "points"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("steps: 60\nexport:\n  resolution: 64\n  faces: 3000\n  texture_size: 128\n")
    bench_main(["--set-dir", str(tmp_path / "set"), "--preset", "fast", "--config", str(cfg),
                "--out", str(tmp_path / "runs"), "--minutes", "20"])  # fmt: skip
    (result,) = (tmp_path / "runs").glob("set-*/bench_set.json")
    (row,) = json.loads(result.read_text())["scenes"]
    assert "error" not in row, row
    assert row["steps"] == 60 and row["stopped_by_budget_at_s"] is None
    assert row["field_psnr"] > 10 and row["glb_psnr"] > 8 and 0 < row["chamfer_l1"] < 0.5
    assert row["albedo_psnr"] is None and row["radiance_texture_vs_albedo_psnr"] is not None
    assert 0 <= row["fscore@0.02"] <= 1 and row["rays_per_s"] > 0 and row["faces"] > 0
    table = result.with_name("bench_set.md").read_text()
    assert f"| {name} |" in table and "n/a" in table
