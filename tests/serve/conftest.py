"""Fixtures for the web platform tests: one running job service and one job run to completion (shared by
the API and browser tests, as a real job costs real seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.platform import make_service, wait_status

from t23d.jobs.service import JobService
from t23d.jobs.spec import GenerateSpec


@pytest.fixture(scope="session")
def platform_service(tiny_sd_dir, tmp_path_factory) -> Iterator[JobService]:
    """A running job service (one local worker) shared by the serve tests."""
    service = make_service(tmp_path_factory.mktemp("platform-data"), tiny_sd_dir)
    service.start()
    yield service
    service.stop(timeout_s=30)


@pytest.fixture(scope="session")
def completed_job(platform_service) -> str:
    """The id of a generate job of the shared service, run to completion."""
    job = platform_service.submit(GenerateSpec(prompt="a red ball", preset="fast", seed=3))
    wait_status(platform_service, job.id, ("completed",))
    return job.id
