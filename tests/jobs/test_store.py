"""The job store: states, leases and fencing, queue limit, persistence across connections."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from t23d.common.errors import ConfigError
from t23d.jobs.spec import GenerateSpec, ReconstructSpec, spec_from_dict, spec_to_dict, validate_spec
from t23d.jobs.store import DB_NAME, JobConflict, JobNotFound, JobStore, QueueFull


def spec(prompt: str = "a red ball") -> GenerateSpec:
    return GenerateSpec(prompt=prompt, preset="fast", steps=2, seed=1)


def test_submit_claim_finish_lifecycle(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit(spec())
    assert job.status == "queued" and job.attempts == 0 and job.title == "a red ball"
    claimed = store.claim("w1", lease_s=30)
    assert claimed.id == job.id and claimed.status == "running" and claimed.worker == "w1"
    assert claimed.attempts == 1 and claimed.lease_until > time.time() + 20
    assert store.claim("w2", lease_s=30) is None  # nothing else queued
    assert store.finish(job.id, "w1", "completed", exit_code=0, run_dir="/x/run")
    done = store.get(job.id)
    assert done.status == "completed" and done.run_dir == "/x/run" and done.finished_at is not None
    assert done.worker is None and done.spec == spec()


def test_claims_are_oldest_first_and_exclusive_across_threads(tmp_path):
    store = JobStore(tmp_path)
    ids = [store.submit(spec(f"p{i}")).id for i in range(20)]
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        own = JobStore(tmp_path)  # its own connections, like another process
        while (job := own.claim(name, 30)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids) and len(set(claimed)) == 20  # each job claimed exactly once
    first = JobStore(tmp_path)
    assert first.counts()["running"] == 20


def test_finish_is_fenced_by_the_lease(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit(spec())
    store.claim("w1", lease_s=0.01)
    time.sleep(0.05)
    (expired,) = store.expired()
    assert expired.id == job.id
    assert store.requeue(job.id, "w1")
    assert store.get(job.id).status == "queued"
    store.claim("w2", lease_s=30)
    # the first worker comes back late: its heartbeat and its result change nothing
    assert store.heartbeat(job.id, "w1", 30) is None
    assert not store.finish(job.id, "w1", "failed", error="late")
    assert store.get(job.id).status == "running" and store.get(job.id).worker == "w2"
    assert store.get(job.id).attempts == 2
    assert not store.requeue(job.id, "w1")  # fenced too


def test_cancel_queued_and_running_and_finished(tmp_path):
    store = JobStore(tmp_path)
    queued = store.submit(spec("q"))
    assert store.cancel(queued.id).status == "cancelled"
    running = store.submit(spec("r"))
    store.claim("w", 30)
    after = store.cancel(running.id)
    assert after.status == "running" and after.cancel_requested
    assert store.heartbeat(running.id, "w", 30).cancel_requested
    store.finish(running.id, "w", "cancelled", exit_code=130)
    assert store.get(running.id).status == "cancelled" and not store.get(running.id).cancel_requested
    with pytest.raises(JobConflict, match="only queued or running jobs can be cancelled"):
        store.cancel(running.id)


def test_resume_requeues_failed_and_cancelled_only(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit(spec())
    store.claim("w", 30)
    with pytest.raises(JobConflict, match="only failed or cancelled"):
        store.resume(job.id)
    store.finish(job.id, "w", "failed", exit_code=1, error="boom", run_dir="/r")
    resumed = store.resume(job.id)
    assert resumed.status == "queued" and resumed.error is None and resumed.run_dir == "/r"


def test_requeue_of_a_job_being_cancelled_marks_it_cancelled(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit(spec())
    store.claim("w", 30)
    store.cancel(job.id)
    assert store.requeue(job.id, "w")
    assert store.get(job.id).status == "cancelled"


def test_queue_limit_and_batch_keys(tmp_path):
    store = JobStore(tmp_path)
    store.submit(spec("1"), max_queued=2, batch_key="b/1")
    store.submit(spec("2"), max_queued=2)
    with pytest.raises(QueueFull, match="limit 2"):
        store.submit(spec("3"), max_queued=2)
    assert store.find_batch_key("b/1").title == "1" and store.find_batch_key("b/2") is None
    with pytest.raises(sqlite3.IntegrityError):
        store.submit(spec("dup"), batch_key="b/1")
    assert [j.title for j in store.list(batch_prefix="b/")] == ["1"]
    assert [j.title for j in store.list()] == ["2", "1"]  # newest first


def test_unknown_job_and_database_is_wal(tmp_path):
    store = JobStore(tmp_path)
    with pytest.raises(JobNotFound, match="no job with id 'nope'"):
        store.get("nope")
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_spec_round_trip_and_validation():
    g = GenerateSpec(
        prompt="stone grotto", negative_prompt="blurry", preset="fast", steps=5, seed=2, prior="tiny"
    )
    assert spec_from_dict(spec_to_dict(g)) == g
    r = ReconstructSpec(input="/data/cap", data_format="colmap", downscale=2, faces=5000, texture_size=512)
    assert spec_from_dict(spec_to_dict(r)) == r
    validate_spec(g, priors=("tiny",))
    with pytest.raises(ConfigError, match="prior '/etc' is not one of this service's priors: tiny"):
        validate_spec(GenerateSpec(prompt="x", prior="/etc"), priors=("tiny",))
    with pytest.raises(ConfigError, match=r"steps must be an integer in \[1, 1000000\], got 0"):
        validate_spec(GenerateSpec(prompt="x", steps=0))
    with pytest.raises(ConfigError, match="preset must be one of fast, default, quality, got 'turbo'"):
        validate_spec(GenerateSpec(prompt="x", preset="turbo"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="texture_size must be a power of two, got 300"):
        validate_spec(ReconstructSpec(input="/x", texture_size=300))
    with pytest.raises(ConfigError, match="unknown field.*colour"):
        spec_from_dict({"kind": "generate", "prompt": "x", "colour": "red"})
    with pytest.raises(ConfigError, match="kind must be one of generate, reconstruct"):
        spec_from_dict({"kind": "render"})
