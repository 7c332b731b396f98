"""The blocking client's upload and job verbs against the embedded stack, over real HTTP."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from gpurelay_client import ChecksumMismatch, Client, Conflict, GpurelayError, JobFailed, NotFound, UnprocessableEntity
from gpurelay_client._jobs import succeeded
from gpurelay_client._models import JobArtifactPayload, JobProgressPayload

from tests.clients.python.stack import ThreadedStack

pytestmark = pytest.mark.timeout(120)
ARTIFACTS = ["manifest.json", "metrics.json", "overlay.mp4", "overlay.webm"]


def test_an_upload_streams_its_bytes_with_progress_and_completes(client: Client, lap_video: Path) -> None:
    seen: list[tuple[int, int]] = []
    upload = client.uploads.upload(lap_video, on_progress=lambda sent, total: seen.append((sent, total)))
    size = lap_video.stat().st_size
    assert upload.status == "completed"
    assert (upload.filename, upload.content_type, upload.size) == ("lap.mp4", "video/mp4", size)
    assert upload.sha256 == hashlib.sha256(lap_video.read_bytes()).hexdigest()
    assert seen
    assert seen[-1] == (size, size)
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert client.uploads.get(upload.id) == upload
    from_bytes = client.uploads.upload(lap_video.read_bytes())  # no name: the type is sniffed
    assert (from_bytes.content_type, from_bytes.size, from_bytes.sha256) == ("video/mp4", size, upload.sha256)


def test_a_job_runs_from_a_local_file_and_its_artifacts_download_with_checksums_checked(
    client: Client, lap_video: Path, tmp_path: Path
) -> None:
    job = client.jobs.run("lap_compare", inputs={"video": lap_video}, params={"downscale_width": 160}, timeout=90)
    assert job.status == "succeeded"
    assert job.result is not None
    assert job.result["frames"] == 24
    assert job.spec.kind == "lap_compare"
    paths = client.jobs.download_artifacts(job, tmp_path / "out")
    assert sorted(p.name for p in paths) == ARTIFACTS
    recorded = {a.name: a.sha256 for a in job.artifacts}
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths} == recorded
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert not list((tmp_path / "out").glob("*.part"))
    only = client.jobs.download_artifacts(job, tmp_path / "one", names=["metrics.json"])
    assert only == [tmp_path / "one" / "metrics.json"]
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["metrics.json"]
    with pytest.raises(GpurelayError, match=r"no artifact named nope\.json"):
        client.jobs.download_artifacts(job, tmp_path / "none", names=["nope.json", "metrics.json"])


def test_an_artifact_changed_in_storage_is_refused_and_not_kept(
    client: Client, stack: ThreadedStack, lap_video: Path, tmp_path: Path
) -> None:
    job = client.jobs.run("lap_compare", inputs={"video": lap_video}, params={"downscale_width": 160}, timeout=90)
    stored = stack.blob("metrics.json", job.id)
    stored.write_bytes(stored.read_bytes().replace(b"{", b"[", 1))  # same size, other bytes
    with pytest.raises(ChecksumMismatch, match=r"metrics\.json"):
        client.jobs.download_artifacts(job, tmp_path / "out")
    assert not (tmp_path / "out" / "metrics.json").exists()
    assert not list((tmp_path / "out").glob("*.part"))


def test_a_stream_yields_typed_events_in_order_to_the_terminal_one(client: Client, lap_video: Path) -> None:
    upload = client.uploads.upload(lap_video)
    job = client.jobs.create("lap_compare", inputs={"video": upload.id}, params={"downscale_width": 160})
    events = list(client.jobs.stream(job))
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs))
    assert None not in seqs
    assert events[0].type == "job.created"
    assert events[-1].type == "job.succeeded"
    assert events[-1].terminal
    assert all(e.envelope.job_id == job.id for e in events)
    artifacts = [e.data for e in events if e.type == "job.artifact"]
    assert all(isinstance(a, JobArtifactPayload) for a in artifacts)
    assert len(artifacts) == len(ARTIFACTS)
    assert any(isinstance(e.data, JobProgressPayload) for e in events)
    after = events[3].seq
    assert after is not None
    stored = [e.seq for e in events if e.type != "job.progress"]  # SSE coalesces progress by time
    resumed = [e.seq for e in client.jobs.stream(job, after=after) if e.type != "job.progress"]
    assert resumed == [s for s in stored if s is not None and s > after]


def test_a_failing_job_raises_job_failed_with_its_error_code(client: Client) -> None:
    not_a_video = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096  # passes the magic bytes, decodes to nothing
    with pytest.raises(JobFailed) as failed:
        client.jobs.run("lap_compare", inputs={"video": not_a_video}, timeout=90)
    assert failed.value.status == "failed"
    assert failed.value.code
    assert failed.value.code == failed.value.job.error.code


def test_cancel_and_wait_give_the_canceled_record(client: Client, lap_video: Path) -> None:
    job = client.jobs.create("lap_compare", inputs={"video": lap_video}, delay_s=3600)
    assert client.jobs.cancel(job).id == job.id
    ended = client.jobs.wait(job, timeout=60)
    assert ended.status == "canceled"
    with pytest.raises(Conflict):  # it ended: cancelling again is refused
        client.jobs.cancel(job.id)
    with pytest.raises(JobFailed, match="canceled"):
        succeeded(ended)


def test_list_pages_through_every_job(stack: ThreadedStack, lap_video: Path) -> None:
    with Client(stack.url, api_key=stack.new_key("pager")) as pager:
        upload = pager.uploads.upload(lap_video)
        made = [pager.jobs.create("lap_compare", inputs={"video": upload}, delay_s=3600).id for _ in range(5)]
        first = pager.jobs.list_page(limit=2)
        listed = [job.id for job in pager.jobs.list(limit=2)]
        for job_id in made:
            pager.jobs.cancel(job_id)
    assert len(first.items) == 2
    assert first.next_cursor is not None
    assert listed == sorted(made, reverse=True)  # newest first, each once, across three pages


def test_errors_are_typed_and_carry_the_problem(client: Client, stack: ThreadedStack, lap_video: Path) -> None:
    with Client(stack.url, api_key=stack.new_key("other")) as other:
        theirs = other.jobs.create("lap_compare", inputs={"video": lap_video}, delay_s=3600)
        other.jobs.cancel(theirs)
    with pytest.raises(NotFound) as missing:
        client.jobs.get(theirs.id)
    assert missing.value.status == 404
    assert missing.value.problem.status == 404
    assert theirs.id in missing.value.detail
    with pytest.raises(UnprocessableEntity) as invalid:
        client.jobs.create("lap_compare", inputs={"video": "upl_nope"}, params={"downscale_width": 5})
    assert [(e.loc, e.type) for e in invalid.value.errors] == [
        (["body", "params", "downscale_width"], "greater_than_equal")
    ]
    assert invalid.value.status == 422
    assert invalid.value.problem.detail == "The request is not valid."
