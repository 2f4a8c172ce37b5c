"""Shared test setup: offline Hugging Face hub, tiny random priors, and the ``slow``/``gpu`` markers.

The default run is CPU-only and offline: HF_HUB_OFFLINE=1 is set here, before anything imports
huggingface_hub (which reads it once at import), and re-asserted for the session by an autouse fixture.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from t23d.common.runtime import prepare_runtime

prepare_runtime()  # as the CLI does, before torch loads (passive OpenMP threads: the suite runs on busy machines)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from fixtures.tiny_priors import (  # noqa: E402
    build_tiny_if,
    build_tiny_mvdream,
    build_tiny_sd,
    save_sentencepiece_t5_tokenizer,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow")
    has_cuda = False
    if any("gpu" in item.keywords for item in items):
        import torch

        has_cuda = torch.cuda.is_available()
    skip_slow = pytest.mark.skip(reason="slow test: pass --run-slow to run it")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session", autouse=True)
def offline_hub() -> None:
    """Keep the hub offline for the whole session (also if huggingface_hub was imported earlier)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Stable Diffusion pipeline folder (diffusers layout), built once per session."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def tiny_if_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DeepFloyd IF stage-I pipeline folder (diffusers layout), built once per session."""
    return build_tiny_if(tmp_path_factory.mktemp("tiny_if"))


@pytest.fixture(scope="session")
def tiny_mvdream_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MVDream pipeline folder (ashawkey/mvdream-sd2.1-diffusers layout), built once per session."""
    return build_tiny_mvdream(tmp_path_factory.mktemp("tiny_mvdream"))


@pytest.fixture(scope="session")
def tiny_if_spiece_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``tiny_if_dir`` but with the hub's tokenizer format (spiece.model); needs sentencepiece + protobuf."""
    pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")
    folder = build_tiny_if(tmp_path_factory.mktemp("tiny_if_spiece"))
    save_sentencepiece_t5_tokenizer(folder / "tokenizer")
    return folder


@pytest.fixture(scope="session")
def tiny_zero123_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Zero123 pipeline folder (ashawkey/zero123-xl-diffusers layout), built once per session."""
    from fixtures.tiny_zero123 import build_tiny_zero123

    return build_tiny_zero123(tmp_path_factory.mktemp("tiny_zero123"))
