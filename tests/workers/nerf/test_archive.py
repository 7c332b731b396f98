"""The nerf job's archive check: unsafe or bad archives fail with their code, before any GPU stage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from contracts import streams
from contracts.job_parts import JobStatus, StageStatus
from contracts.job_record import JobRecord
from contracts.subjects import Namespace
from modal_workers.nerf.archive import image_size, unpack_photos
from modal_workers.nerf.settings import NerfSettings
from modal_workers.runtime.worker_runtime import PermanentError
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.service import Dispatcher
from tests.support.dispatcher import EventLog, dispatcher_settings, wait_record
from tests.support.gateway import Gateway, Tenant
from tests.support.nerf_jobs import BAD_ARCHIVES, archive, nerf_route, photos, submit_nerf, tiny_png

SMALL = NerfSettings(max_archive_bytes=2 * 1024 * 1024)


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_a_bad_archive_fails_with_its_code_and_names_the_file(case: str, tmp_path: Path) -> None:
    data, code, named = BAD_ARCHIVES[case]
    (tmp_path / "in.zip").write_bytes(data)
    with pytest.raises(PermanentError) as caught:
        unpack_photos(tmp_path / "in.zip", tmp_path / "out", SMALL)
    assert (caught.value.code, named in caught.value.message) == (code, True), caught.value.message
    assert not any(p.is_symlink() or not p.resolve().is_relative_to(tmp_path) for p in tmp_path.rglob("*"))


def test_more_entries_than_allowed_an_undecodable_photo_and_a_non_zip_fail(tmp_path: Path) -> None:
    cases = {
        "many.zip": (archive(photos(12)), NerfSettings(max_archive_files=10), "archive_too_large"),
        "broken.zip": (archive({**photos(8), "cut.png": tiny_png(5)[:40]}), SMALL, "invalid_archive"),
        "plain.zip": (b"PK\x03\x04 but not really a zip", SMALL, "invalid_archive"),
        "huge.zip": (archive(photos(8)), NerfSettings(max_image_pixels=200), "archive_too_large"),
    }
    for name, (data, settings, code) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(PermanentError) as caught:
            unpack_photos(tmp_path / name, tmp_path / name.removesuffix(".zip"), settings)
        assert caught.value.code == code, (name, caught.value.message)


def test_a_good_archive_unpacks_its_photos_in_name_order_under_safe_names(tmp_path: Path) -> None:
    named = {"__MACOSX/._p00.png": b"junk", "set/b.png": tiny_png(1, 24), "set/a.png": tiny_png(2, 24)}
    data = archive(named | photos(6))
    (tmp_path / "in.zip").write_bytes(data)
    found = unpack_photos(tmp_path / "in.zip", tmp_path / "out", SMALL)
    assert [p.name for p in found][-2:] == ["set/a.png", "set/b.png"]
    assert [p.path.name for p in found][:2] == ["0000.png", "0001.png"]
    assert (found[-1].width, found[-1].height) == (24, 24)
    assert image_size(b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0\x00\x11\x08\x01\xe0\x02\x80\x03") == (640, 480)


def _settled(record: JobRecord) -> bool:
    """Failed, and its failed stage closed (the dispatcher's ``job.stage`` follows the worker's failure)."""
    return record.terminal and bool(record.stages) and record.stages[-1].status is StageStatus.FAILED


def _stages(log: EventLog, job: str) -> list[tuple[str, str]]:
    return [(e.data["name"], e.data["status"]) for e in log.events[job] if e.type == "job.stage"]


async def test_bad_archives_fail_fast_through_the_dispatcher_and_no_gpu_stage_is_dispatched(
    gateway: Gateway, acme: Tenant, nats_server: EmbeddedNats, namespace: Namespace, js: JetStreamContext
) -> None:
    env = {"GPURELAY_NERF_MAX_ARCHIVE_BYTES": str(2 * 1024 * 1024)}
    settings = dispatcher_settings(
        nats_server.url, namespace, gateway.settings.data_dir, url=gateway.url, local_worker_env=env,
        heartbeat_interval_s=1.0, heartbeat_misses=10,
    )  # fmt: skip  # heartbeats as tolerant as a loaded machine needs
    dispatcher = Dispatcher(settings, routes={"nerf": nerf_route()})
    log = await EventLog().start(js, namespace)
    await dispatcher.start()
    try:
        jobs = {case: await submit_nerf(acme, data) for case, (data, _, _) in BAD_ARCHIVES.items()}
        kv = await js.key_value(namespace.bucket(streams.KV_JOBS))
        records = await asyncio.gather(*(wait_record(kv, job, _settled, 60) for job in jobs.values()))
    finally:
        await dispatcher.stop()
        await log.stop()
    for (case, job), record in zip(jobs.items(), records, strict=True):
        _, code, named = BAD_ARCHIVES[case]
        assert record.status is JobStatus.FAILED, case
        assert record.error is not None
        assert (record.error.code, named in record.error.message) == (code, True), (case, record.error)
        assert [(s.name, s.status) for s in record.stages] == [("check", StageStatus.FAILED)], case
        started = [e.id for e in log.events[job] if e.type == "job.started"]
        assert (_stages(log, job), started) == ([("check", "running"), ("check", "failed")], [f"w-{job}-a1-s0-started"])
