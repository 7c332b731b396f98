"""One valid example of every spec and every event payload, shared by the contract tests."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from contracts.events import sessions as se
from contracts.events.jobs import (
    JobArtifactPayload,
    JobCanceledPayload,
    JobCancelRequestedPayload,
    JobCreatedPayload,
    JobDispatchedPayload,
    JobFailedPayload,
    JobHeartbeatPayload,
    JobLogPayload,
    JobPositionPayload,
    JobProgressPayload,
    JobQueuedPayload,
    JobRetryingPayload,
    JobStagePayload,
    JobStartedPayload,
    JobSucceededPayload,
)
from contracts.events.registry import EventType
from contracts.events.robots import JointSample
from contracts.events.uploads import UploadCompletedPayload
from contracts.events.webhooks import WebhookDeadLetteredPayload
from contracts.job_parts import Artifact, JobError, StageStatus
from contracts.specs.jobs import JobSpec, parse_job_spec

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
SHA = "a" * 64

SPEC_BODIES: dict[str, dict[str, object]] = {
    "lap_compare": {
        "kind": "lap_compare",
        "inputs": {"video": {"upload_id": "upl_1"}, "reference": {"url": "https://cdn.example.com/lap2.mp4"}},
        "params": {"flow_method": "dis", "downscale_width": 320},
        "webhook": {"url": "https://hooks.example.com/in", "events": ["job.succeeded", "job.failed"]},
    },
    "pose": {"kind": "pose", "inputs": {"video": {"upload_id": "upl_2"}}, "params": {"batch_size": 16}},
    "nerf": {"kind": "nerf", "inputs": {"images": {"upload_id": "upl_3"}}, "params": {"frames": 36}},
    "splat": {"kind": "splat", "robot_id": "so101-a", "params": {"chunk_every": 25}},
    "vlm": {"kind": "vlm", "inputs": {}, "params": {"prompt": "What is the robot doing?"}},
    "session_export": {"kind": "session_export", "params": {"session_id": "job_1", "format": "lerobot", "fps": 15}},
}


def spec(kind: str = "pose") -> JobSpec:
    """A valid spec of ``kind``."""
    return parse_job_spec(SPEC_BODIES[kind])


ARTIFACT = Artifact(name="overlay.mp4", key="results/acme/job_1/overlay.mp4", content_type="video/mp4", size=10)

EXAMPLES: dict[EventType, BaseModel] = {
    EventType.JOB_CREATED: JobCreatedPayload(spec=spec("lap_compare")),
    EventType.JOB_QUEUED: JobQueuedPayload(),
    EventType.JOB_POSITION: JobPositionPayload(position=3, eta_s=40.0),
    EventType.JOB_DISPATCHED: JobDispatchedPayload(backend="modal", function="pose", gpu="T4", call_id="fc-1"),
    EventType.JOB_STARTED: JobStartedPayload(worker="modal/pose-1", gpu="T4"),
    EventType.JOB_PROGRESS: JobProgressPayload(fraction=0.42, stage="inference", message="frame 420/1000"),
    EventType.JOB_LOG: JobLogPayload(level="warning", message="low light"),
    EventType.JOB_ARTIFACT: JobArtifactPayload(
        name="frames/0001.png",
        key="results/acme/job_1/frames/0001.png",
        content_type="image/png",
        size=2048,
        sha256=SHA,
    ),
    EventType.JOB_HEARTBEAT: JobHeartbeatPayload(worker="local/1"),
    EventType.JOB_STAGE: JobStagePayload(name="train", index=1, count=3, status=StageStatus.RUNNING),
    EventType.JOB_RETRYING: JobRetryingPayload(reason="worker_lost", next_attempt=2, delay_s=5.0),
    EventType.JOB_CANCEL_REQUESTED: JobCancelRequestedPayload(reason="user"),
    EventType.JOB_SUCCEEDED: JobSucceededPayload(result={"frames": 1000, "laps": [1.5, 2.5]}, artifacts=(ARTIFACT,)),
    EventType.JOB_FAILED: JobFailedPayload(error=JobError(code="timeout", message="ran past 600 s", retryable=False)),
    EventType.JOB_CANCELED: JobCanceledPayload(reason="user"),
    EventType.UPLOAD_COMPLETED: UploadCompletedPayload(
        upload_id="upl_1",
        key="uploads/acme/upl_1/lap.mp4",
        filename="lap.mp4",
        content_type="video/mp4",
        size=1_000_000,
        sha256=SHA,
    ),
    EventType.ROBOT_JOINTS: JointSample(robot_id="so101-a", joint_angles=[0.0, 1.2, -3.1, 0.5, 6.2, -6.28], ts=T0),
    EventType.WEBHOOK_DEAD_LETTERED: WebhookDeadLetteredPayload(
        endpoint_id="wh_1",
        event_id="0193a1b2-0000-7000-8000-000000000000",
        event_type="job.succeeded",
        attempts=8,
        last_status=503,
        last_error="Service Unavailable",
    ),
    EventType.SESSION_STOP_REQUESTED: se.SessionStopRequestedPayload(reason="the client asked"),
    EventType.SESSION_SNAPSHOT: se.SessionSnapshotPayload(
        artifact=ARTIFACT.model_copy(update={"name": "snapshots/live-000300.ply"}), seq=300, frames=298
    ),
    EventType.SESSION_RESULT: se.SessionResultPayload(
        chunk=3, first_seq=17, last_seq=24, text="a person walks in", tokens=5, latency_ms=180.0
    ),
    EventType.SESSION_ALERT: se.SessionAlertPayload(
        chunk=3, first_seq=17, last_seq=24, pattern="person", message="someone is here", text="a person walks in"
    ),
    EventType.SESSION_READY: se.SessionReadyPayload(attempt=1, load_s=4.2, frames_held=16, resumable=True),
    EventType.SESSION_RESUMED: se.SessionResumedPayload(
        attempt=2, from_seq=120, frames_replayed=31, frames_lost=0, gap_s=3.5
    ),
}
"""One valid payload per event type: adding a type without an example fails the tests."""
