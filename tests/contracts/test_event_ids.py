"""Worker event ids live in their own namespace, scoped to one job attempt, and always fit an envelope."""

from __future__ import annotations

import pytest

from contracts.envelope import EventEnvelope
from contracts.event_ids import is_worker_event_id, worker_event_id, worker_event_prefix
from contracts.ids import new_id, new_uuid7

JOB = new_id("job")
NAMES = (None, "started", "s2-started", "succeeded", "failed", "art-results.json", "art-" + "x" * 300)


@pytest.mark.parametrize("name", NAMES)
def test_a_worker_id_belongs_to_exactly_its_job_and_attempt(name: str | None) -> None:
    event_id = worker_event_id(JOB, 3, name)
    assert event_id.startswith(worker_event_prefix(JOB, 3))
    assert is_worker_event_id(event_id, JOB, 3)
    assert not is_worker_event_id(event_id, JOB, 2)
    assert not is_worker_event_id(event_id, new_id("job"), 3)
    assert EventEnvelope(id=event_id, type="job.log", source="t", tenant="acme").id == event_id


def test_named_ids_are_deterministic_and_random_ones_are_not() -> None:
    assert worker_event_id(JOB, 1, "started") == worker_event_id(JOB, 1, "started")
    assert worker_event_id(JOB, 1, "art-a.txt") == worker_event_id(JOB, 1, "art-a.txt")
    assert worker_event_id(JOB, 1, "art-a.txt") != worker_event_id(JOB, 1, "art-b.txt")
    assert worker_event_id(JOB, 1) != worker_event_id(JOB, 1)


@pytest.mark.parametrize(
    "platform_id",
    [f"created-{JOB}", f"cancel-{JOB}", f"{JOB}-queued", f"{JOB}-a1-failed", f"{JOB}-a1-dispatched", f"{JOB}-canceled",
     f"upload-completed-{JOB}", new_uuid7(), f"w-{JOB}-a1", f"w-{JOB}-a1-", f"w-{JOB}-a1-x.y", f"w-{JOB}-a1-x\r\ny"],
)  # fmt: skip
def test_platform_ids_and_malformed_ones_are_never_worker_ids(platform_id: str) -> None:
    assert not is_worker_event_id(platform_id, JOB, 1)


def test_long_job_ids_attempts_and_names_still_fit() -> None:
    job = "j" * 64
    ids = {worker_event_id(job, 1000, name) for name in NAMES[1:]}
    assert len(ids) == len(NAMES) - 1
    for event_id in ids:
        assert len(event_id) <= 64
        assert is_worker_event_id(event_id, job, 1000)
        assert not is_worker_event_id(event_id, "j" * 63, 1000)


def test_a_job_id_with_a_dash_cannot_borrow_another_jobs_namespace() -> None:
    borrowed = worker_event_id("x", 1, "a2-succeeded")  # w-x-a1-a2-succeeded
    assert is_worker_event_id(borrowed, "x", 1)
    assert not is_worker_event_id(borrowed, "x-a1", 2)
    assert is_worker_event_id(worker_event_id("x-a1", 2, "succeeded"), "x-a1", 2)
