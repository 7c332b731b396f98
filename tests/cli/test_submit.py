"""``gpurelay submit`` against the real gateway and notifier over HTTP and a real nats-server.

No dispatcher or worker runs: the tests play them, publishing the job's events into JOBS (and
folding the record into KV ``jobs``) while the CLI watches. The CLI runs its own asyncio loop, so
it is invoked in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from typer.testing import CliRunner, Result

from contracts.envelope import EventEnvelope
from contracts.events.jobs import (
    JobArtifactPayload,
    JobDispatchedPayload,
    JobFailedPayload,
    JobProgressPayload,
    JobQueuedPayload,
    JobStartedPayload,
    JobSucceededPayload,
)
from contracts.events.registry import EventType, make_event
from contracts.ids import tenant_key
from contracts.job_parts import Artifact, JobCost, JobError, JobStatus
from contracts.job_record import JobRecord
from contracts.streams import KV_JOBS
from contracts.subjects import Namespace, Subjects, stored_subject
from services.cli.main import app
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.app import create_app as create_notifier
from tests.support.events import publish
from tests.support.gateway import Gateway, Tenant
from tests.support.http import bound_socket, serve
from tests.support.notifier import notifier_settings


def cli_env(gateway: Gateway, tenant: Tenant, nats_url: str, namespace: Namespace, **extra: str) -> dict[str, str]:
    """The CLI's settings for this test's gateway, tenant, NATS and namespace."""
    return {
        "GPURELAY_URL": gateway.url,
        "GPURELAY_API_KEY": tenant.key,
        "GPURELAY_NATS_URL": nats_url,
        "GPURELAY_NAMESPACE": namespace.name,
        "GPURELAY_DATA_DIR": str(gateway.settings.data_dir / "cli"),  # no stray dev.env
        "COLUMNS": "250",
        **extra,
    }


async def invoke(args: list[str], env: dict[str, str]) -> Result:
    """Run the CLI in a thread (it runs its own event loop)."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, args, env=env)


def make_video(path: Path, frames: int = 12) -> Path:
    """A real MP4 (mp4v, 64x48) written by OpenCV."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 20, dtype=np.uint8))
    writer.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """A short lap video."""
    return make_video(tmp_path / "lap.mp4")


@pytest.fixture
def notifier_url(tmp_path: Path, nats_server: EmbeddedNats, namespace: Namespace, gateway: Gateway) -> Iterator[str]:
    """The real notifier (same NATS, namespace and signing secret as the gateway), served on loopback."""
    sock = bound_socket()
    settings = notifier_settings(nats_server.url, namespace, tmp_path / "notifier")
    with serve(create_notifier(settings), sock):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def stored(js: JetStreamContext, namespace: Namespace, subject: str) -> list[EventEnvelope]:
    """Every event of JOBS on ``subject`` (relative to the namespace; one job event read as JOBS stores it),
    in order."""
    wanted = stored_subject(namespace, namespace.subject(subject))
    sub = await js.subscribe(wanted, stream=namespace.stream("JOBS"), ordered_consumer=True)
    out: list[EventEnvelope] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=1.0)
            out.append(EventEnvelope.from_json_bytes(msg.data))
            if msg.metadata.num_pending == 0:
                return out
    except TimeoutError:
        return out
    finally:
        await sub.unsubscribe()


async def play_job(nc: NatsClient, js: JetStreamContext, namespace: Namespace, outcome: str) -> str:
    """Wait for the CLI's ``job.created``, then play dispatcher and worker to ``outcome``; the job id."""
    sub = await nc.subscribe(namespace.subject("jobs.acme.*.created"))
    try:
        created = EventEnvelope.from_json_bytes((await sub.next_msg(timeout=30)).data)
    finally:
        await sub.unsubscribe()
    job_id = created.job_id
    assert job_id is not None
    subjects, kv = Subjects(namespace), await js.key_value(namespace.bucket(KV_JOBS))
    artifact = Artifact(name="overlay.mp4", key=f"results/acme/{job_id}/overlay.mp4", content_type="video/mp4", size=9)
    payloads: list[tuple[EventType, Any]] = [
        (EventType.JOB_QUEUED, JobQueuedPayload()),
        (EventType.JOB_DISPATCHED, JobDispatchedPayload(backend="local", function="lap_compare", gpu="T4")),
        (EventType.JOB_STARTED, JobStartedPayload(worker="test-worker")),
        *[
            (EventType.JOB_PROGRESS, JobProgressPayload(fraction=f, stage="flow", message=f"{f:.0%}"))
            for f in (0.2, 0.6, 0.9)
        ],
    ]
    if outcome == "succeeded":
        payloads.append((EventType.JOB_ARTIFACT, JobArtifactPayload(**artifact.model_dump())))
        payloads.append((EventType.JOB_SUCCEEDED, JobSucceededPayload(result={"frames": 12}, artifacts=(artifact,))))
    else:
        error = JobError(code="bad_input", message="the video has no frames")
        payloads.append((EventType.JOB_FAILED, JobFailedPayload(error=error)))
    for type_, payload in payloads:
        event = make_event(type_, payload, tenant="acme", source="test", job_id=job_id, kind="lap_compare", attempt=1)
        await publish(js, subjects, event)
        await asyncio.sleep(0.05)
    if outcome == "succeeded":  # fold the record as the dispatcher would
        await fold_succeeded(kv, job_id, artifact)
    return job_id


async def fold_succeeded(kv: KeyValue, job_id: str, artifact: Artifact) -> None:
    """The dispatcher's fold of a succeeded job into KV ``jobs``."""
    entry = await kv.get(tenant_key("acme", job_id))
    assert entry.value is not None
    record, now = JobRecord.model_validate_json(entry.value), datetime.now(UTC)
    for status in (JobStatus.QUEUED, JobStatus.DISPATCHED, JobStatus.RUNNING):
        record = record.transition(status, now)
    record = record.with_artifact(1, artifact).transition(
        JobStatus.SUCCEEDED, now, result={"frames": 12}, cost=JobCost(gpu_seconds=2.5, gpu="T4", estimated_usd=0.0004)
    )
    await kv.put(tenant_key("acme", job_id), record.model_dump_json().encode())


async def test_submit_no_watch_uploads_and_creates_the_job(
    gateway: Gateway, acme: Tenant, nats_server: EmbeddedNats, namespace: Namespace, js: JetStreamContext, video: Path
) -> None:
    env = cli_env(gateway, acme, nats_server.url, namespace)
    args = ["submit", "lap_compare", str(video), "-p", "downscale_width=320", "--param", "flow_method=dis"]
    result = await invoke([*args, "--no-watch"], env)
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip().splitlines()[-1]
    assert job_id.startswith("job_")

    (created,) = await stored(js, namespace, f"jobs.acme.{job_id}.created")
    spec = created.data["spec"]
    assert spec["params"]["downscale_width"] == 320
    assert spec["params"]["flow_method"] == "dis"
    assert {name for name, ref in spec["inputs"].items() if ref} == {"video"}
    upload_id = spec["inputs"]["video"]["upload_id"]
    upload = (await acme.http.get(f"/v1/uploads/{upload_id}")).json()
    assert upload["status"] == "completed"
    assert upload["size"] == len(await asyncio.to_thread(video.read_bytes))
    assert upload["content_type"] == "video/mp4"
    (completed,) = await stored(js, namespace, f"uploads.acme.{upload_id}.completed")
    assert completed.data["filename"] == "lap.mp4"


async def test_submit_watch_follows_the_job_to_success(
    gateway: Gateway,
    acme: Tenant,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    nc: NatsClient,
    js: JetStreamContext,
    notifier_url: str,
    video: Path,
) -> None:
    env = cli_env(gateway, acme, nats_server.url, namespace, GPURELAY_EVENTS_URL=notifier_url)
    player = asyncio.create_task(play_job(nc, js, namespace, "succeeded"))
    result = await invoke(["submit", "lap_compare", str(video), str(video)], env)
    job_id = await player
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.splitlines()[0] == job_id
    assert "succeeded" in out
    assert "result.frames" in out
    assert "2.5 GPU-s on T4" in out
    assert "overlay.mp4" in out
    assert f"{gateway.url}/v1/blobs/results/acme/{job_id}/overlay.mp4" in out
    (created,) = await stored(js, namespace, f"jobs.acme.{job_id}.created")
    assert set(created.data["spec"]["inputs"]) == {"video", "reference"}


async def test_submit_watch_failed_job_exits_1_with_the_error_code(
    gateway: Gateway,
    acme: Tenant,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    nc: NatsClient,
    js: JetStreamContext,
    notifier_url: str,
    video: Path,
) -> None:
    env = cli_env(gateway, acme, nats_server.url, namespace, GPURELAY_EVENTS_URL=notifier_url)
    player = asyncio.create_task(play_job(nc, js, namespace, "failed"))
    result = await invoke(["submit", "pose", str(video), "--watch"], env)
    await player
    assert result.exit_code == 1, result.output
    assert "bad_input" in result.output
    assert "the video has no frames" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "splat", "{video}"], "not a batch kind"),
        (["submit", "nope", "{video}"], "not a batch kind"),
        (["submit", "pose", "{missing}"], "does not exist"),
        (["submit", "pose", "{video}", "{video}"], "pose takes video"),
        (["submit", "nerf", "{text}"], "unknown file type"),
        (["submit", "pose", "{video}", "--param", "no-equals"], "is not k=v"),
        (["submit", "pose", "{video}", "-p", "batch_size=0"], "batch_size: Input should be greater than"),
        (["submit", "lap_compare", "{video}", "-p", "colour=red"], "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    video = make_video(tmp_path / "v.mp4", frames=2)
    text = tmp_path / "notes.txt"
    text.write_text("hi")
    paths = {"video": str(video), "missing": str(tmp_path / "gone.mp4"), "text": str(text)}
    result = CliRunner().invoke(app, [a.format(**paths) for a in args], env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    assert message in result.output
