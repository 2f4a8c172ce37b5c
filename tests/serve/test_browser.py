"""End to end in a real headless Chromium (Debian's ``chromium``, driven by Playwright): submit a prompt with
the keyboard, watch the live queue reach completed, see the model in the 3D viewer, download and validate
the .glb; upload a small synthetic capture and cancel it."""

from __future__ import annotations

import io
import re
import shutil
import zipfile

import numpy as np
import pytest
from helpers.platform import JOB_TIMEOUT_S, live_server

from t23d.serve.app import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not on PATH (apt-get install chromium; .ci/run installs it)",
)
VIEWER_BACKGROUND = np.array([0xDF, 0xE5, 0xEB])


@pytest.fixture(scope="module")
def browser_page(platform_service):
    from playwright.sync_api import sync_playwright

    with live_server(create_app(platform_service)) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader",
                "--disable-gpu-sandbox",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 1000}, accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base)
        yield page, errors
        browser.close()


def foreground_fraction(png: bytes) -> float:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return float((np.abs(img - VIEWER_BACKGROUND).sum(-1) > 30).mean())


def test_prompt_to_viewer_and_download(browser_page, tmp_path):
    from gltf_validate import validate_gltf

    page, errors = browser_page
    page.wait_for_selector("#prior option", state="attached")  # options loaded from /api/config
    # keyboard only: type the prompt, tab through the fields, Enter submits
    page.focus("#prompt")
    page.keyboard.type("a red ball")
    page.keyboard.press("Tab")  # negative prompt
    page.keyboard.press("Tab")  # preset (already "fast")
    page.keyboard.press("Tab")  # steps
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    status = page.wait_for_selector("#form-status:has-text('Queued job')")
    job_id = re.search(r"Queued job (\w+)", status.text_content()).group(1)

    item = page.wait_for_selector(f"#queue-list li[data-job-id='{job_id}']")
    assert "a red ball" in item.text_content()
    # pushed by server-sent events: the same element goes running, then moves to the gallery
    page.wait_for_selector(f"#queue-list li[data-job-id='{job_id}'][data-status='running']", timeout=60_000)
    card = page.wait_for_selector(f"#gallery-list li[data-job-id='{job_id}']", timeout=JOB_TIMEOUT_S * 1000)
    assert "faces" in card.text_content()

    page.click(f"#gallery-list li[data-job-id='{job_id}'] button:has-text('View in 3D')")
    page.wait_for_selector(f"#viewer[data-loaded='{job_id}']", timeout=60_000)
    page.wait_for_timeout(500)
    viewer = page.locator("#viewer")
    before = viewer.screenshot()
    assert foreground_fraction(before) > 0.02, "the viewer's canvas shows no model"
    assert page.evaluate("document.activeElement.id") == "viewer"  # focus moved to the viewer
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
    page.keyboard.press("+")
    page.wait_for_timeout(300)
    assert viewer.screenshot() != before  # the keyboard orbits and zooms

    with page.expect_download() as download:
        page.click(f"#gallery-list li[data-job-id='{job_id}'] a:has-text('.glb')")
    glb = tmp_path / "asset.glb"
    download.value.save_as(glb)
    assert glb.read_bytes()[:4] == b"glTF"
    report = validate_gltf(glb)
    assert report["issues"]["numErrors"] == 0, report["issues"]
    assert errors == []


def test_upload_capture_then_cancel(browser_page, tmp_path, platform_service):
    from t23d.data.synthetic import SyntheticScene
    from t23d.data.synthetic_writers import write_nerfstudio

    page, errors = browser_page
    write_nerfstudio(SyntheticScene(), tmp_path / "capture", n_views=4, resolution=24)
    archive = tmp_path / "capture.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in (tmp_path / "capture").rglob("*"):
            zf.write(f, f.relative_to(tmp_path))
    page.set_input_files("#files", str(archive))
    page.select_option("#data_format", "nerfstudio")
    page.fill("#faces", "2000")
    page.select_option("#texture_size", "256")
    page.click("#photos-form button[type=submit]")
    status = page.wait_for_selector("#form-status:has-text('Queued job')")
    job_id = re.search(r"Queued job (\w+)", status.text_content()).group(1)
    job = platform_service.store.get(job_id)
    assert job.kind == "reconstruct" and job.spec.data_format == "nerfstudio"
    assert job.spec.faces == 2000 and job.spec.texture_size == 256
    assert (platform_service.paths(job_id).inputs / "capture" / "transforms.json").is_file()

    page.click(f"#queue-list li[data-job-id='{job_id}'] button:has-text('Cancel')")
    page.wait_for_selector(
        f"#queue-list li[data-job-id='{job_id}'][data-status='cancelled']", timeout=120_000
    )
    assert (
        page.locator(f"#queue-list li[data-job-id='{job_id}'] button:has-text('Retry from scratch')").count()
        == 1
    )
    assert errors == []
