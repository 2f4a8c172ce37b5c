"""``t23d submit``, ``t23d jobs`` (against a live service) and ``t23d batch`` (real tiny jobs)."""

from __future__ import annotations

import csv
import json
import time

import pytest
from helpers.platform import JOB_CONFIGS, live_server, make_service

from t23d.cli.main import main
from t23d.serve.app import AppConfig, create_app

TOKEN = "client-token-1"


@pytest.fixture
def server(tmp_path, tiny_sd_dir):
    """A live service whose workers are not started (jobs stay queued), with a token."""
    service = make_service(tmp_path / "data", tiny_sd_dir)
    with live_server(create_app(service, AppConfig(token=TOKEN))) as url:
        yield service, url


def test_submit_prompt_and_capture_then_list_show_cancel(server, tmp_path, capsys):
    from t23d.data.synthetic import SyntheticScene
    from t23d.data.synthetic_writers import write_nerfstudio

    service, url = server
    auth = ["--server", url, "--token", TOKEN]
    assert main(["submit", "a red ball", *auth, "--preset", "fast", "--steps", "3", "--seed", "7"]) == 0
    prompt_id = capsys.readouterr().out.strip()
    job = service.store.get(prompt_id)
    assert job.kind == "generate" and job.spec.steps == 3 and job.spec.seed == 7 and job.spec.preset == "fast"

    capture = tmp_path / "statue"
    write_nerfstudio(SyntheticScene(), capture, n_views=3, resolution=16)
    assert main(["submit", str(capture), *auth, "--format", "nerfstudio", "--downscale", "2"]) == 0
    capture_id = capsys.readouterr().out.strip()
    job = service.store.get(capture_id)
    assert job.kind == "reconstruct" and job.spec.data_format == "nerfstudio" and job.spec.downscale == 2
    assert (service.paths(capture_id).inputs / "statue" / "transforms.json").is_file()

    assert main(["jobs", *auth]) == 0
    listing = capsys.readouterr().out
    assert prompt_id in listing and capture_id in listing and "(2 queued)" in listing
    assert main(["jobs", prompt_id, *auth, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["prompt"] == "a red ball"
    assert main(["jobs", *auth, "--cancel", prompt_id]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert service.store.get(prompt_id).status == "cancelled"


def test_client_errors_name_the_cause(server, capsys):
    _, url = server
    assert main(["jobs", "--server", url, "--token", "wrong-token"]) == 2
    assert "answered 401" in capsys.readouterr().err
    assert main(["jobs", "nope", "--server", url, "--token", TOKEN]) == 2
    err = capsys.readouterr().err
    assert "answered 404" in err and "no job with id 'nope'" in err
    assert main(["submit", "x", "--server", "http://127.0.0.1:9", "--token", TOKEN]) == 2
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["jobs", "--server", "127.0.0.1:8023"]) == 2
    assert "--server must be an http(s) URL" in capsys.readouterr().err


def test_batch_runs_prompts_writes_summary_and_skips_finished_on_rerun(tmp_path, tiny_sd_dir, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# one tiny job (prompt parsing is tested below)\n\na red ball\n")
    out = tmp_path / "batch"
    args = ["batch", str(prompts), "--out", str(out), "--workers", "1", "--preset", "fast", "--device", "cpu"]
    args += ["--prior", str(tiny_sd_dir)]
    for c in JOB_CONFIGS:
        args += ["--config", c]
    assert main(args) == 0
    assert "1/1 completed" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["completed"] == 1
    rows = summary["jobs"]
    assert [r["title"] for r in rows] == ["a red ball"]
    for r in rows:
        assert r["status"] == "completed" and (out / r["asset"]).is_file() and r["num_faces"] > 0
        assert (out / r["preview"]).is_file()
    with open(out / "summary.csv") as f:
        assert [r["key"] for r in csv.DictReader(f)] == ["prompt:a red ball"]
    page = (out / "index.html").read_text()
    assert all(f'src="{r["preview"]}"' in page and f'href="{r["asset"]}"' in page for r in rows)

    t0 = time.monotonic()
    assert main(args) == 0  # rerun: everything is finished, nothing runs again
    assert time.monotonic() - t0 < 30
    again = json.loads((out / "summary.json").read_text())["jobs"]
    assert [r["attempts"] for r in again] == [1] and [r["job_id"] for r in again] == [
        r["job_id"] for r in rows
    ]


def test_batch_inputs(tmp_path):
    from t23d.common.errors import T23dError
    from t23d.jobs.batch import read_batch
    from t23d.jobs.spec import GenerateSpec, ReconstructSpec

    g, r = GenerateSpec(prompt="-", preset="fast"), ReconstructSpec(input="-", data_format="colmap")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\na\n")
    assert [i.key for i in read_batch(prompts, g, r)] == ["prompt:a", "prompt:b", "prompt:a#2"]
    caps = tmp_path / "caps"
    for name in ("temple", "cave", ".hidden"):
        (caps / name).mkdir(parents=True)
    items = read_batch(caps, g, r)
    assert [i.key for i in items] == ["capture:cave", "capture:temple"]
    assert items[0].spec.input == str((caps / "cave").resolve()) and items[0].spec.data_format == "colmap"
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(T23dError, match="has no prompts"):
        read_batch(tmp_path / "empty.txt", g, r)
    with pytest.raises(T23dError, match="neither a prompts file nor a folder of captures"):
        read_batch(tmp_path / "missing", g, r)
