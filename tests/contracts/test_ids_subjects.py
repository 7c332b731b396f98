"""Ids used as subject tokens: every builder rejects unsafe ids and accepts safe ones."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from contracts.envelope import EventEnvelope
from contracts.ids import InvalidIdError, new_id, new_uuid7, validate_id
from contracts.subjects import (
    JOB_EVENT_NAMES,
    Namespace,
    Subjects,
    event_token,
    stored_subject,
)

BAD_IDS = [
    "",
    ".",
    "a.b",
    "*",
    "a*",
    ">",
    "a>",
    "a b",
    " a",
    "a\tb",
    "a\nb",
    "abc\n",
    "x" * 65,
    "é",
    "tenant-ü",
    "日本",
    "a/b",
]
GOOD_IDS = ["a", "acme", "job_0193a1b2c3", "A-Z_09", "x" * 64]

S = Subjects()
# (name, builder taking one id, position of that id). Every id argument of every builder.
BUILDERS: list[tuple[str, Callable[[str], str]]] = [
    ("job_event.tenant", lambda v: S.job_event(v, "job_1", "progress")),
    ("job_event.job_id", lambda v: S.job_event("acme", v, "progress")),
    ("job_events.tenant", lambda v: S.job_events(v, "job_1")),
    ("job_events.job_id", lambda v: S.job_events("acme", v)),
    ("tenant_jobs.tenant", lambda v: S.tenant_jobs(v)),
    ("upload_completed.tenant", lambda v: S.upload_completed(v, "upl_1")),
    ("upload_completed.upload_id", lambda v: S.upload_completed("acme", v)),
    ("session_frames.tenant", lambda v: S.session_frames(v, "ses_1")),
    ("session_frames.session_id", lambda v: S.session_frames("acme", v)),
    ("session_control.tenant", lambda v: S.session_control(v, "ses_1")),
    ("session_control.session_id", lambda v: S.session_control("acme", v)),
    ("robot_joints.tenant", lambda v: S.robot_joints(v, "so101")),
    ("robot_joints.robot_id", lambda v: S.robot_joints("acme", v)),
    ("webhook_dead.tenant", lambda v: S.webhook_dead(v, "wh_1")),
    ("webhook_dead.endpoint_id", lambda v: S.webhook_dead("acme", v)),
    ("webhook_deliver.tenant", lambda v: S.webhook_deliver(v, "wh_1")),
    ("webhook_deliver.endpoint_id", lambda v: S.webhook_deliver("acme", v)),
    ("namespace", lambda v: Namespace(v).subject("x")),
    ("new_id.prefix", lambda v: new_id(v)),
    ("validate_id", lambda v: validate_id(v)),
]
BUILDER_IDS = [name for name, _ in BUILDERS]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize(("name", "build"), BUILDERS, ids=BUILDER_IDS)
def test_builders_reject_unsafe_ids(name: str, build: Callable[[str], str], bad: str) -> None:
    if name == "namespace" and bad == "":
        assert build(bad) == "x"  # the empty namespace means "no namespace"
        return
    with pytest.raises(InvalidIdError):
        build(bad)


@pytest.mark.parametrize("good", GOOD_IDS[:-1])  # new_id adds a 33-character suffix
@pytest.mark.parametrize(("name", "build"), BUILDERS, ids=BUILDER_IDS)
def test_builders_accept_safe_ids(name: str, build: Callable[[str], str], good: str) -> None:
    out = build(good)
    assert good in out
    assert not any(c.isspace() for c in out)


@pytest.mark.parametrize("good", GOOD_IDS)
def test_validate_id_accepts_up_to_64(good: str) -> None:
    assert validate_id(good) == good


def test_subjects_shape() -> None:
    assert S.job_event("acme", "job_1", "progress") == "jobs.acme.job_1.progress"
    assert S.upload_completed("acme", "u1") == "uploads.acme.u1.completed"
    assert Subjects(Namespace("t1")).robot_joints("acme", "r1") == "t1.robots.acme.r1.joints"
    for event in JOB_EVENT_NAMES:
        assert S.job_event("acme", "job_1", event).split(".")[-1] == event


@pytest.mark.parametrize("ns", [Namespace(), Namespace("t1")])
def test_a_job_events_name_is_read_from_its_published_and_its_stored_subject(ns: Namespace) -> None:
    """JOBS stores ``jobs.{t}.{j}.{event}`` as ``jobs.{t}.{j}.{event}.{slot}``: the event is the token
    after the job id, not the last one (the slot)."""
    subjects = Subjects(ns)
    for event in JOB_EVENT_NAMES:
        published = subjects.job_event("acme", "job_1", event)
        stored = f"{published}.17"
        assert event_token(published) == event_token(stored) == event
    assert event_token(subjects.upload_completed("acme", "u1")) == "completed"


def test_a_job_events_stored_subject_names_its_slot() -> None:
    ns = Namespace("t1")
    published = Subjects(ns).job_event("acme", "job_1", "canceled")
    assert Subjects(ns).stored_job_event("acme", "job_1", "canceled") == "t1.jobs.acme.job_1.canceled.*"
    assert stored_subject(ns, published) == "t1.jobs.acme.job_1.canceled.*"
    assert stored_subject(ns, "t1.jobs.*.*.succeeded") == "t1.jobs.*.*.succeeded.*"
    for unchanged in ("t1.jobs.acme.job_1.>", "t1.jobs.acme.>", "t1.uploads.acme.u1.completed", "t1.jobs.>"):
        assert stored_subject(ns, unchanged) == unchanged
    assert Subjects(ns).job_events("acme", "job_1") == "t1.jobs.acme.job_1.>"


def test_job_event_rejects_unknown_event() -> None:
    with pytest.raises(ValueError, match="unknown job event"):
        S.job_event("acme", "job_1", "exploded")


def test_new_ids_are_tokens_and_ordered() -> None:
    ids = [new_id("job") for _ in range(50)]
    for value in ids:
        validate_id(value)
    assert ids == sorted(ids)
    assert len(new_uuid7()) == 36


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_envelope_rejects_unsafe_tenant_and_job_id(bad: str) -> None:
    with pytest.raises(ValidationError):
        EventEnvelope(type="job.queued", source="gateway", tenant=bad)
    with pytest.raises(ValidationError):
        EventEnvelope(type="job.queued", source="gateway", tenant="acme", job_id=bad)
