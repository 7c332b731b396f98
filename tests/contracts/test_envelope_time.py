"""Envelope times are instants: a time without a timezone is refused, any offset is kept as UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from contracts.envelope import EventEnvelope
from contracts.events.jobs import JobProgressPayload
from contracts.events.registry import EventType, make_event


def _body(time: str) -> bytes:
    return json.dumps({"id": "e1", "type": "job.progress", "source": "t", "tenant": "acme", "time": time}).encode()


@pytest.mark.parametrize("naive", ["2026-11-22T10:00:00", "2026-11-22T10:00:00.123456", "2026-11-22 10:00"])
def test_a_time_without_a_timezone_is_refused(naive: str) -> None:
    with pytest.raises(ValidationError) as refused:
        EventEnvelope.from_json_bytes(_body(naive))
    assert [e["loc"] for e in refused.value.errors()] == [("time",)]


def test_a_naive_datetime_is_refused_when_building_an_event() -> None:
    with pytest.raises(ValidationError):
        make_event(
            EventType.JOB_PROGRESS, JobProgressPayload(fraction=0.1), tenant="acme", source="t", job_id="job_1",
            time=datetime(2026, 11, 22, 10, 0),
        )  # fmt: skip


def test_any_offset_is_kept_as_the_same_instant_in_utc() -> None:
    event = EventEnvelope.from_json_bytes(_body("2026-11-22T12:00:00+02:00"))
    assert event.time == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert event.time.utcoffset() == timedelta(0)
    new_york = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    built = EventEnvelope(type="job.log", source="t", tenant="acme", time=new_york)
    assert built.time.isoformat() == "2026-01-01T05:00:00+00:00"
    assert EventEnvelope.from_json_bytes(built.to_json_bytes()) == built
