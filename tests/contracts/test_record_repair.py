"""A stored record that no longer validates: readers get a typed error, the dispatcher a failed record."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from contracts.job_parts import JobCost, JobStatus
from contracts.job_record import JobRecord
from contracts.record_repair import INVALID_RECORD, UnreadableRecordError, failed_in_place_of, read_record
from contracts.specs.jobs import parse_job_spec
from tests.contracts.examples import T0, spec

LATER = T0 + timedelta(minutes=5)


def stored(record: JobRecord, **changes: object) -> bytes:
    """``record`` as KV holds it, with ``changes`` (dotted paths) written over its JSON."""
    data = json.loads(record.model_dump_json())
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[last] = value
    return json.dumps(data).encode()


def splat_record() -> JobRecord:
    body = {"kind": "splat", "params": {"camera_mount": {"xyz": [0, 0, 1]}, "chunk_every": 10}}
    return JobRecord.new("job_1", "acme", parse_job_spec(body), T0)


def test_a_null_where_a_float_was_is_an_unreadable_record() -> None:
    corrupt = stored(splat_record(), **{"spec.params.camera_mount.xyz": [0, 0, None]})
    with pytest.raises(UnreadableRecordError) as caught:
        read_record(corrupt)
    assert "spec.splat.params.camera_mount.xyz.2" in str(caught.value)
    assert read_record(splat_record().model_dump_json()) == splat_record()


def test_the_failed_record_resets_only_the_parts_that_do_not_validate() -> None:
    corrupt = stored(splat_record(), **{"spec.params.camera_mount.xyz": [0, 0, None], "cost.gpu_seconds": None})
    failed = failed_in_place_of(corrupt, "acme", "job_1", LATER)
    assert failed is not None
    assert (failed.id, failed.tenant, failed.status) == ("job_1", "acme", JobStatus.FAILED)
    assert failed.error is not None
    assert failed.error.code == INVALID_RECORD
    assert failed.error.details == {"reset": ["spec.params", "cost"]}
    assert failed.spec.params == type(failed.spec.params)()  # chunk_every 10 went with the bad mount
    assert failed.cost == JobCost()
    assert failed.timings.finished_at == LATER
    assert failed.created_at == T0


def test_an_ended_record_keeps_its_end() -> None:
    done = JobRecord.new("job_2", "acme", spec("pose"), T0).transition(JobStatus.CANCELED, T0)
    repaired = failed_in_place_of(stored(done, **{"cost.estimated_usd": None}), "acme", "job_2", LATER)
    assert repaired is not None
    assert (repaired.status, repaired.error) == (JobStatus.CANCELED, None)
    assert repaired.updated_at == LATER


@pytest.mark.parametrize(
    "value",
    [
        b'{"not": "a job record"}',
        b"[1, 2]",
        b"not json",
        stored(JobRecord.new("job_3", "acme", spec("pose"), T0), **{"spec.inputs.video": {"upload_id": "a b"}}),
        stored(JobRecord.new("job_3", "acme", spec("pose"), T0), kind="dance"),
    ],
    ids=["no-record", "a-list", "not-json", "bad-required-input", "bad-kind"],
)
def test_a_record_without_identity_or_inputs_has_no_replacement(value: bytes) -> None:
    assert failed_in_place_of(value, "acme", "job_3", LATER) is None
