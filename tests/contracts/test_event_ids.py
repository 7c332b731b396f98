"""Worker event ids live in their own namespace, scoped to one job attempt, and always fit an envelope."""

from __future__ import annotations

import pytest

from contracts import event_ids as ids
from contracts.envelope import EventEnvelope
from contracts.event_ids import is_worker_event_id, worker_event_id, worker_event_prefix
from contracts.ids import new_id

JOB = "job_01a20cdd806373cdbf59a7df710637f6"  # fixed ids: a test's name must be the same in every pytest process
UUID7 = "01a20cdd-d97d-73f0-924e-2ea5e13228c4"
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


PLATFORM_IDS = {
    ids.created_event_id(JOB): f"created-{JOB}",
    ids.cancel_requested_event_id(JOB): f"cancel-{JOB}",
    ids.stop_requested_event_id(JOB): f"stop-{JOB}",
    ids.reset_msg_id(JOB, 7): f"reset-{JOB}-7",
    ids.upload_completed_event_id(JOB): f"upload-completed-{JOB}",
    ids.queued_event_id(JOB): f"{JOB}-queued",
    ids.canceled_event_id(JOB): f"{JOB}-canceled",
    ids.failed_event_id(JOB, 1): f"{JOB}-a1-failed",
    ids.attempt_event_id(JOB, 2, "dispatched"): f"{JOB}-a2-dispatched",
    ids.attempt_event_id(JOB, 1, ids.stage_event_name(0, "running")): f"{JOB}-a1-stage0-running",
    ids.ticket_msg_id(JOB, 3): f"{JOB}-a3-ticket",
    ids.delivery_msg_id("evt_1", "wh_1"): "evt_1:wh_1",
    ids.dead_letter_msg_id("evt_1", "wh_1"): "dead:evt_1:wh_1",
}
"""Each builder's id and the format already stored in streams: a changed format would store an event twice."""


@pytest.mark.parametrize(("built", "stored"), PLATFORM_IDS.items())
def test_platform_ids_keep_the_format_already_in_the_log(built: str, stored: str) -> None:
    assert built == stored
    assert EventEnvelope(id=built, type="job.log", source="t", tenant="acme").id == built


def test_a_once_per_job_or_attempt_event_has_one_id_whoever_publishes_it() -> None:
    assert ids.canceled_event_id(JOB) == ids.job_event_id(JOB, "canceled")
    assert ids.failed_event_id(JOB, 1) == ids.attempt_event_id(JOB, 1, "failed")  # unroutable = attempt 1 failed
    assert ids.failed_event_id(JOB, 1) != ids.failed_event_id(JOB, 2)
    with pytest.raises(ValueError, match="attempt"):
        ids.attempt_event_id(JOB, 0, "failed")


@pytest.mark.parametrize(
    "platform_id",
    [*PLATFORM_IDS, UUID7, f"w-{JOB}-a1", f"w-{JOB}-a1-", f"w-{JOB}-a1-x.y", f"w-{JOB}-a1-x\r\ny"],
)
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


def test_one_end_per_attempt_whoever_ends_it() -> None:
    end = ids.attempt_end_msg_id(JOB, 2)
    assert end == f"end-{JOB}-a2"
    assert end not in {ids.attempt_event_id(JOB, 2, n) for n in ("succeeded", "failed", "retrying")}
    assert end != ids.attempt_end_msg_id(JOB, 1)
    assert ids.attempt_end_msg_id("x-a1", 2) != ids.attempt_end_msg_id("x", 1)  # a dashed id is digested
    assert len(ids.attempt_end_msg_id("j" * 300, 1000)) <= 64
    with pytest.raises(ValueError, match="attempt"):
        ids.attempt_end_msg_id(JOB, 0)
