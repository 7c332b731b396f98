"""Every event type has a payload model, an example, and round-trips through JSON."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from contracts.envelope import EventEnvelope
from contracts.events.jobs import JobArtifactPayload, JobProgressPayload, JobQueuedPayload
from contracts.events.registry import (
    JOB_EVENT_TYPES,
    PAYLOADS,
    EventType,
    UnknownEventTypeError,
    job_event_name,
    make_event,
    parse_payload,
    parse_payload_as,
)
from contracts.events.robots import JointBatch, JointSample
from contracts.events.uploads import UploadCompletedPayload
from contracts.specs.jobs import JobKind
from contracts.subjects import JOB_EVENT_NAMES
from tests.contracts.examples import EXAMPLES, T0


def _event(type_: EventType, payload: BaseModel | None = None) -> EventEnvelope:
    job = type_ in JOB_EVENT_TYPES
    return make_event(
        type_,
        payload if payload is not None else EXAMPLES[type_],
        tenant="acme",
        source="test",
        job_id="job_1" if job else None,
        kind=JobKind.POSE if job else None,
        attempt=1 if job else None,
        time=T0,
    )


def test_every_event_type_has_a_payload_and_an_example() -> None:
    assert set(PAYLOADS) == set(EventType)
    assert set(EXAMPLES) == set(EventType)
    for type_, example in EXAMPLES.items():
        assert type(example) is PAYLOADS[type_]


def test_every_payload_model_is_strict_and_documented() -> None:
    for model in PAYLOADS.values():
        assert model.model_config.get("extra") == "forbid", model
        assert model.__doc__, model


@pytest.mark.parametrize("type_", list(EventType))
def test_envelope_round_trips_through_json(type_: EventType) -> None:
    env = _event(type_)
    assert env.type == type_.value
    raw = env.to_json_bytes()
    back = EventEnvelope.from_json_bytes(raw)
    assert back == env
    assert back.to_json_bytes() == raw
    payload = parse_payload(back)
    assert payload == EXAMPLES[type_]
    assert parse_payload_as(back, PAYLOADS[type_]) == EXAMPLES[type_]
    assert type(payload).model_validate_json(payload.model_dump_json()) == payload


@pytest.mark.parametrize("type_", list(EventType))
def test_payload_rejects_unknown_fields(type_: EventType) -> None:
    data: dict[str, Any] = {**EXAMPLES[type_].model_dump(mode="json"), "surprise": 1}
    with pytest.raises(ValidationError):
        PAYLOADS[type_].model_validate(data)


def test_job_event_names_match_subjects() -> None:
    assert {job_event_name(t) for t in JOB_EVENT_TYPES} == set(JOB_EVENT_NAMES)
    assert job_event_name("job.progress") == "progress"
    assert job_event_name(EventType.JOB_CANCEL_REQUESTED) == "cancel_requested"
    with pytest.raises(ValueError, match="not a job event"):
        job_event_name(EventType.UPLOAD_COMPLETED)


def test_make_event_defaults() -> None:
    env = _event(EventType.JOB_PROGRESS)
    assert env.subject == "job_1"
    assert env.kind == "pose"
    assert env.data == {"fraction": 0.42, "stage": "inference", "message": "frame 420/1000", "metrics": None}
    upload = _event(EventType.UPLOAD_COMPLETED)
    assert upload.subject == "upl_1"
    assert upload.job_id is None
    assert _event(EventType.ROBOT_JOINTS).subject == "so101-a"
    assert make_event("job.queued", JobQueuedPayload(), tenant="a", source="s", job_id="j").id != ""


def test_make_event_checks_the_payload_model() -> None:
    with pytest.raises(TypeError, match="carries JobProgressPayload"):
        _event(EventType.JOB_PROGRESS, JobQueuedPayload())
    # A subclass is not the payload model either (its extra fields would not parse back).
    artifact = EXAMPLES[EventType.JOB_ARTIFACT]
    assert isinstance(artifact, JobArtifactPayload)
    with pytest.raises(TypeError):
        _event(EventType.SESSION_SNAPSHOT, artifact.to_artifact())
    with pytest.raises(ValueError, match="needs a job_id"):
        make_event(EventType.JOB_QUEUED, JobQueuedPayload(), tenant="acme", source="t")
    with pytest.raises(UnknownEventTypeError):
        make_event("job.exploded", JobQueuedPayload(), tenant="acme", source="t", job_id="j")


def test_parse_payload_errors() -> None:
    env = EventEnvelope(type="job.exploded", source="t", tenant="acme", data={})
    with pytest.raises(UnknownEventTypeError):
        parse_payload(env)
    bad = EventEnvelope(type="job.progress", source="t", tenant="acme", data={"fraction": 1.5})
    with pytest.raises(ValidationError):
        parse_payload(bad)
    good = _event(EventType.JOB_PROGRESS)
    with pytest.raises(TypeError):
        parse_payload_as(good, UploadCompletedPayload)
    assert parse_payload_as(good, JobProgressPayload).fraction == 0.42


@pytest.mark.parametrize("angle", [float("nan"), float("inf"), -float("inf"), 6.3, -7.0])
def test_joint_angles_finite_and_bounded(angle: float) -> None:
    with pytest.raises(ValidationError):
        JointSample(robot_id="r1", joint_angles=[0.0, angle], ts=T0)


def test_joint_batch_limits() -> None:
    sample = JointSample(robot_id="r1", joint_angles=[0.1] * 6, ts=T0)
    assert len(JointBatch(samples=[sample] * 1000).samples) == 1000
    with pytest.raises(ValidationError):
        JointBatch(samples=[sample] * 1001)
    with pytest.raises(ValidationError):
        JointBatch(samples=[])
    with pytest.raises(ValidationError, match="same robot"):
        JointBatch(samples=[sample, sample.model_copy(update={"robot_id": "r2"})])
    with pytest.raises(ValidationError):
        JointSample(robot_id="r1", joint_angles=[], ts=T0)
    with pytest.raises(ValidationError):
        JointSample(robot_id="r1", joint_angles=[0.0], ts=T0.replace(tzinfo=None))


@pytest.mark.parametrize("name", ["../x", "a/b", ".", "..", " a", "a\x00"])
def test_upload_filename_is_bare(name: str) -> None:
    data = EXAMPLES[EventType.UPLOAD_COMPLETED].model_dump() | {"filename": name}
    with pytest.raises(ValidationError):
        UploadCompletedPayload.model_validate(data)
