"""The pose workload end to end through the worker runtime: real NATS events, local storage.

The model is ``yolo26n-pose.yaml`` (random weights from a fixed seed): these tests check the
job's structure, shapes and events, not what it detects.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest
from nats.js import JetStreamContext

from contracts.envelope import EventEnvelope
from contracts.runs import PROGRESS_MIN_INTERVAL_S, Outcome, RunRequest
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from modal_workers.pose import infer as pose_infer
from modal_workers.pose.synth import signal_preserving, write_video
from modal_workers.runtime.sinks import NatsSink
from modal_workers.runtime.worker_runtime import WorkerRuntime
from services.common.nats.server.embedded import EmbeddedNats
from services.common.storage import LocalStorage, upload_key
from tests.workers.pose.support import CONF, assert_same_people, frames_of, match_people

RESULT_KEYS = {"duration", "fps", "totalFrames", "processedFrames", "videoWidth", "videoHeight", "players",
               "shuttle", "courtDetection"}  # fmt: skip


@pytest.fixture(autouse=True)
def random_pose_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs that name no model get the yaml-built one (nothing can be downloaded here)."""
    monkeypatch.setenv("GPURELAY_POSE_MODEL", "yolo26n-pose.yaml")


@dataclass
class Ran:
    """One job's outcome, its events in stream order, and its stored artifacts."""

    outcome: Outcome
    events: list[EventEnvelope]
    files: dict[str, Path]

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def json(self, name: str) -> Any:
        return json.loads(self.files[name].read_bytes())


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    """Local storage under the test's tmp dir."""
    return LocalStorage(tmp_path / "blobs", "http://127.0.0.1:1", b"pose-test-secret-0123456789abcdef")


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """24 frames of 320x240: a court, two walking figures and a shuttle arc."""
    return write_video(tmp_path / "match.mp4", frames=24, width=320, height=240)


async def run_pose(
    nats_server: EmbeddedNats, ns: Namespace, js: JetStreamContext, storage: LocalStorage, video: Path,
    job_id: str = "jpose1", every_progress: bool = False, **params: Any,
) -> Ran:  # fmt: skip
    """Upload ``video``, run a pose job through :class:`WorkerRuntime` and collect what it produced."""
    data = await asyncio.to_thread(video.read_bytes)
    await storage.put(upload_key("", "acme", "up" + job_id, video.name), data, "video/mp4")
    spec = {"kind": "pose", "inputs": {"video": {"upload_id": "up" + job_id}}, "params": {"imgsz": 160, **params}}
    request = RunRequest(tenant="acme", job_id=job_id, kind="pose", attempt=1, spec=spec,
                         function="modal_workers.pose:run", heartbeat_interval_s=1.0,
                         progress_min_interval_s=0.0 if every_progress else PROGRESS_MIN_INTERVAL_S)  # fmt: skip

    def work() -> Outcome:
        runtime = WorkerRuntime(lambda: NatsSink.connect(nats_server.url, ns.name), lambda: storage)
        try:
            from modal_workers.pose.workload import run

            return runtime.run(run, request)
        finally:
            runtime.close()

    outcome = await asyncio.to_thread(work)
    sub = await js.subscribe(Subjects(ns).job_events("acme", job_id), stream=ns.stream(JOBS), ordered_consumer=True)
    events = []
    while True:
        try:
            msg = await sub.next_msg(timeout=1)
        except TimeoutError:
            break
        events.append(EventEnvelope.model_validate_json(msg.data))
    await sub.unsubscribe()
    files = {}
    for artifact in outcome.artifacts:
        path = storage.files.objects / artifact.key
        files[artifact.name] = path if path.is_file() else _find(storage.files.root, artifact.key)
    return Ran(outcome, events, files)


def _find(root: Path, key: str) -> Path:
    hits: Iterator[Path] = (p for p in root.rglob(Path(key).name) if p.is_file() and "objects" in p.parts)
    return next(hits)


def _frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


async def test_pose_job_succeeds_with_the_tracker_shape(
    nats_server: EmbeddedNats, namespace: Namespace, js: JetStreamContext, declared: object,
    storage: LocalStorage, video: Path,
) -> None:  # fmt: skip
    ran = await run_pose(nats_server, namespace, js, storage, video, batch_size=4)
    assert ran.outcome.status == "succeeded", ran.outcome.error
    assert ran.types()[0] == "job.started"
    assert ran.types()[-1] == "job.succeeded"
    names = [a.name for a in ran.outcome.artifacts]
    assert names == ["processed.mp4", "processed.webm", "results.json", "manifest.json"]

    result = ran.json("results.json")
    assert set(result) >= RESULT_KEYS
    assert result["totalFrames"] == 24
    assert result["processedFrames"] == result["totalFrames"]
    assert (result["videoWidth"], result["videoHeight"]) == (320, 240)
    assert result["fps"] == pytest.approx(25.0)
    assert result["duration"] == pytest.approx(24 / 25)
    assert [s["frame"] for s in result["shuttle"]] == list(range(24))
    assert sum(s["visible"] for s in result["shuttle"]) >= 15  # the drawn arc is followed
    for s in result["shuttle"]:
        assert (s["x"] is None) == (not s["visible"])
    court = result["courtDetection"]
    assert court["found"]
    assert len(court["corners"]) == 4
    assert len(court["homography"]) == 3
    for player in result["players"].values():
        for entry in player["frames"]:
            assert len(entry["box"]) == 4
            assert len(entry["keypoints"]) == 17
            assert all(len(k) == 3 for k in entry["keypoints"])
        assert player["analytics"]["unit"] == "m"

    summary = ran.outcome.result
    assert set(summary) >= RESULT_KEYS
    assert summary["processedFrames"] == 24
    assert _frames(ran.files["processed.mp4"]) == 24
    assert _frames(ran.files["processed.webm"]) == 8  # the browser's preview, VP8: every 3rd frame (≤ 12/s)
    assert ran.files["processed.webm"].read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML (WebM)
    manifest = ran.json("manifest.json")
    assert manifest["frames"]["processed"] == 24
    assert manifest["artifacts"]["processed.webm"] == {"fps": 25 / 3, "width": 320, "height": 240, "codec": "vp8"}
    assert manifest["model"]["weights"] == "yolo26n-pose.yaml"


async def test_batch_sizes_1_and_8_give_the_same_people_in_every_frame(
    nats_server: EmbeddedNats, namespace: Namespace, js: JetStreamContext, declared: object,
    storage: LocalStorage, video: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Whole jobs: a model whose output depends on the image, 100 candidate people per frame.

    Each frame's people are compared as a set, matched by box and keypoints: near-equal scores
    may rank differently with the batch size or the CPU (see tests/workers/pose/support.py).
    """
    model = signal_preserving(pose_infer.load_model.__wrapped__("yolo26n-pose.yaml"))
    monkeypatch.setattr(pose_infer, "load_model", lambda weights: model)
    runs = []
    for job_id, batch in (("jposeb1", 1), ("jposeb8", 8)):
        ran = await run_pose(nats_server, namespace, js, storage, video, job_id=job_id,
                             batch_size=batch, conf=CONF, track=False)  # fmt: skip
        assert ran.outcome.status == "succeeded", ran.outcome.error
        runs.append(frames_of(ran.json("results.json")["players"]))
    one, eight = runs
    assert list(one) == list(eight) == list(range(24))
    atol = 0.011  # results.json rounds to 0.01
    for frame in one:
        assert len(one[frame]) > 10
        assert_same_people(one[frame], eight[frame], atol, where=f"frame {frame}")
    # The comparison tells frames apart: each frame has people that the next one does not.
    for frame in range(23):
        assert match_people(one[frame], one[frame + 1], atol)[2] > 0, f"frames {frame} and {frame + 1} look alike"


async def test_progress_arrives_during_inference(
    nats_server: EmbeddedNats, namespace: Namespace, js: JetStreamContext, declared: object,
    storage: LocalStorage, video: Path,
) -> None:  # fmt: skip
    # every progress report sent: throttled, a fast machine's inference fits in one 0.25 s interval
    ran = await run_pose(nats_server, namespace, js, storage, video, job_id="jpose2", every_progress=True, batch_size=1)
    assert ran.outcome.status == "succeeded", ran.outcome.error
    types = ran.types()
    first_artifact = types.index("job.artifact")
    during = [e for e in ran.events[:first_artifact] if e.type == "job.progress"]
    inference = [e for e in during if (e.data.get("message") or "").startswith("inference:")]
    assert len(inference) >= 2, [e.data for e in during]
    fractions = [e.data["fraction"] for e in inference]
    assert fractions == sorted(fractions)
    assert 0 < fractions[0] < fractions[-1] < 1


async def test_not_a_video_fails_permanently(
    nats_server: EmbeddedNats, namespace: Namespace, js: JetStreamContext, declared: object,
    storage: LocalStorage, tmp_path: Path,
) -> None:  # fmt: skip
    bogus = tmp_path / "notes.mp4"
    bogus.write_bytes(b"this is not a video at all" * 100)
    ran = await run_pose(nats_server, namespace, js, storage, bogus, job_id="jpose3")
    assert ran.outcome.status == "permanent"
    assert ran.outcome.error is not None
    assert ran.outcome.error.code == "invalid_video"
    assert ran.types()[-1] == "job.failed"
