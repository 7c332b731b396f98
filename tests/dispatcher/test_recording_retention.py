"""A session's recording on its own retention clock: the results sweep spares it, its own sweep removes it
and flags the record; a session whose only live output is its snapshot is swept too."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from nats.js.kv import KeyValue

from contracts.envelope import utc_now
from contracts.job_parts import Artifact, JobStatus
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Namespace
from services.common.storage import LocalStorage, result_key
from services.dispatcher.retention import Retention
from services.dispatcher.store import JobStore
from tests.support.dispatcher import dispatcher_settings

NAMES = ("chunks/0001.ply", "recording/manifest.json", "recording/frames/main/00000001.jpg", "live/1-splat.ply")


def ended_session(
    job_id: str, keys: dict[str, str], ended_hours_ago: float, *, artifact: str | None, snapshot: str | None
) -> JobRecord:
    ended = utc_now() - timedelta(hours=ended_hours_ago)
    record = JobRecord.new(job_id, "acme", parse_job_spec({"kind": "splat"}), ended - timedelta(minutes=5))
    assert record.session is not None
    artifacts = () if artifact is None else (Artifact(name=artifact, key=keys[artifact], size=1),)
    shot = None if snapshot is None else Artifact(name=snapshot, key=keys[snapshot], size=1)
    return record.model_copy(
        update={
            "status": JobStatus.SUCCEEDED,
            "artifacts": artifacts,
            "session": record.session.model_copy(update={"snapshot": shot}),
            "timings": record.timings.model_copy(update={"finished_at": ended}),
        }
    )


async def stored(storage: LocalStorage, job_id: str) -> dict[str, str]:
    keys = {name: result_key("", "acme", job_id, name) for name in NAMES}
    for key in keys.values():
        await storage.put(key, b"x", "application/octet-stream")
    return keys


async def present(storage: LocalStorage, keys: dict[str, str]) -> set[str]:
    return {name for name, key in keys.items() if await storage.head(key) is not None}


async def test_the_recording_outlives_the_results_and_then_goes(jobs_kv: KeyValue, tmp_path: Path) -> None:
    storage = LocalStorage.from_settings(dispatcher_settings("nats://unused", Namespace(), tmp_path))
    store = JobStore(jobs_kv)
    keys = await stored(storage, "job_s1")
    assert await store.write(
        ended_session("job_s1", keys, 1, artifact="chunks/0001.ply", snapshot="live/1-splat.ply"), None
    )
    now = [utc_now()]
    retention = Retention(jobs_kv, store, storage, 10, clock=lambda: now[0], recording_retention_hours=20)

    now[0] += timedelta(hours=10)  # 11 h after the end: the results go, the recording stays
    assert await retention.sweep() == ["job_s1"]
    assert await present(storage, keys) == {"recording/manifest.json", "recording/frames/main/00000001.jpg"}
    record, _ = await store.get("acme", "job_s1")
    assert record is not None
    assert record.session is not None
    assert all(a.expired for a in record.artifacts)
    assert record.session.snapshot is not None
    assert record.session.snapshot.expired
    assert not record.session.recording_expired
    assert await retention.sweep() == []

    now[0] += timedelta(hours=10)  # 21 h: the recording goes, and the record says so
    assert await retention.sweep() == ["job_s1"]
    assert await present(storage, keys) == set()
    record, _ = await store.get("acme", "job_s1")
    assert record is not None
    assert record.session is not None
    assert record.session.recording_expired
    assert await retention.sweep() == []


async def test_a_shorter_recording_retention_and_a_session_with_only_a_snapshot(
    jobs_kv: KeyValue, tmp_path: Path
) -> None:
    storage = LocalStorage.from_settings(dispatcher_settings("nats://unused", Namespace(), tmp_path))
    store = JobStore(jobs_kv)
    keys = await stored(storage, "job_s2")
    assert await store.write(ended_session("job_s2", keys, 1, artifact=None, snapshot="live/1-splat.ply"), None)
    now = [utc_now()]
    retention = Retention(jobs_kv, store, storage, 20, clock=lambda: now[0], recording_retention_hours=5)
    now[0] += timedelta(hours=5)  # 6 h: only the recording is due
    assert await retention.sweep() == ["job_s2"]
    assert await present(storage, keys) == {"chunks/0001.ply", "live/1-splat.ply"}
    now[0] += timedelta(hours=15)  # 21 h: no artifact, but the snapshot is live: the results go too
    assert await retention.sweep() == ["job_s2"]
    assert await present(storage, keys) == set()
    record, _ = await store.get("acme", "job_s2")
    assert record is not None
    assert record.session is not None
    assert record.session.snapshot is not None
    assert record.session.snapshot.expired
