"""Synthetic lap videos drawn by OpenCV and runtimes with real sinks (worker, CLI and end-to-end tests).

:func:`scrolling_video` draws a smooth random texture shifted right by ``positions[k]`` pixels in
frame ``k`` (sub-pixel, wrapping), so the dense flow of every frame is known: the step between
consecutive positions, direction 0 rad. :func:`square_video` moves a textured square over a flat
background instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import SecretStr

from bench.harness.secrets import SIGNING_SECRET as SECRET
from contracts.envelope import EventEnvelope
from contracts.ids import new_id
from contracts.runs import RunRequest
from modal_workers.runtime.sinks import NatsSink
from modal_workers.runtime.worker_runtime import WorkerRuntime
from services.common.storage import LocalStorage, upload_key

TENANT = "acme"
SIGNING_SECRET = SecretStr(SECRET)
"""The test signing secret as a setting."""


def texture(height: int, width: int, seed: int = 0) -> np.ndarray[Any, Any]:
    """A smooth random grey-level texture (good for dense flow), BGR uint8."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (height // 4 + 1, width // 4 + 1), dtype=np.uint8)
    big = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(cv2.GaussianBlur(big, (5, 5), 1.0), cv2.COLOR_GRAY2BGR)


def write_video(path: Path, frames: Iterator[np.ndarray[Any, Any]], fps: float, fourcc: str = "mp4v") -> Path:
    """Write BGR frames with OpenCV; the file's path."""
    writer: Any = None
    for frame in frames:
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, frame.shape[1::-1])
            assert writer.isOpened()
        writer.write(frame)
    if writer is not None:
        writer.release()
    return path


def scrolling_video(
    path: Path, positions: Sequence[float], size: tuple[int, int] = (160, 120), fps: float = 24.0, fourcc: str = "mp4v"
) -> Path:
    """A texture scrolled right to ``positions[k]`` px in frame ``k``."""
    width, height = size
    base = texture(height, width)

    def frames() -> Iterator[np.ndarray[Any, Any]]:
        for x in positions:
            shift = np.array([[1, 0, x], [0, 1, 0]], dtype=np.float32)
            yield cv2.warpAffine(base, shift, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)

    return write_video(path, frames(), fps, fourcc)


def square_video(
    path: Path, frames: int = 48, step: int = 2, size: tuple[int, int] = (160, 120), fps: float = 24.0
) -> Path:
    """A 32 px textured square moving ``step`` px per frame to the right over a flat background."""
    width, height = size
    patch = texture(32, 32, seed=1)

    def draw() -> Iterator[np.ndarray[Any, Any]]:
        for k in range(frames):
            image = np.full((height, width, 3), 90, np.uint8)
            x = 8 + k * step
            image[height // 2 - 16 : height // 2 + 16, x : x + 32] = patch
            yield image

    return write_video(path, draw(), fps)


def lap_speeds(frames: int, mean: float = 3.0) -> np.ndarray[Any, Any]:
    """A distinctive lap speed profile (px/frame) over ``frames`` frames: two slow corners."""
    t = np.linspace(0, 1, frames)
    return mean * (1 + 0.6 * np.sin(2 * np.pi * t * 2 - 0.5))


def lap_positions(speeds: np.ndarray[Any, Any]) -> list[float]:
    """Cumulative positions of a speed profile (the first frame at 0)."""
    return [0.0, *np.cumsum(speeds[1:]).tolist()]


class MemorySink:
    """Events kept in memory, in order (for tests that need no NATS)."""

    def __init__(self) -> None:
        self.events: list[EventEnvelope] = []

    @classmethod
    async def create(cls) -> MemorySink:
        """A new sink (the runtime's factory)."""
        return cls()

    async def send(self, subject_event: str, event: EventEnvelope, *, dispatched_seq: int = 0) -> None:
        """Keep ``event``."""
        self.events.append(event)

    def types(self) -> list[str]:
        """The event types, in order."""
        return [e.type for e in self.events]


def local_storage(root: Path) -> LocalStorage:
    """Local storage under ``root`` (URLs signed for an unused origin)."""
    return LocalStorage(root, "http://127.0.0.1:9", SIGNING_SECRET)


def memory_runtime(root: Path, **options: Any) -> tuple[WorkerRuntime, MemorySink]:
    """A runtime with a :class:`MemorySink` and local storage under ``root``."""
    runtime = WorkerRuntime(MemorySink.create, lambda: local_storage(root), **options)
    sink = runtime.sink
    assert isinstance(sink, MemorySink)
    return runtime, sink


def nats_runtime(nats_url: str, namespace: str, root: Path, **options: Any) -> WorkerRuntime:
    """A runtime sending straight to JetStream (as the local pool does), local storage under ``root``."""
    return WorkerRuntime(lambda: NatsSink.connect(nats_url, namespace), lambda: local_storage(root), **options)


def upload(runtime: WorkerRuntime, path: Path, tenant: str = TENANT) -> str:
    """Put ``path`` where an upload of it would be; the upload id."""
    upload_id = new_id("upl")
    assert runtime.storage is not None
    runtime.call(runtime.storage.put(upload_key("", tenant, upload_id, path.name), path, "video/mp4"))
    return upload_id


def lap_request(inputs: dict[str, str], params: dict[str, Any] | None = None, **fields: Any) -> RunRequest:
    """A run request of a lap_compare job over uploaded inputs (name → upload id)."""
    spec = {
        "kind": "lap_compare",
        "inputs": {name: {"upload_id": upload_id} for name, upload_id in inputs.items()},
        "params": {"downscale_width": 160, **(params or {})},
    }
    values: dict[str, Any] = {
        "tenant": TENANT,
        "job_id": new_id("job"),
        "kind": "lap_compare",
        "attempt": 1,
        "spec": spec,
        "function": "modal_workers.lap_compare:run",
        "heartbeat_interval_s": 5.0,
    }
    return RunRequest(**(values | fields))


def frame_count(path: Path) -> int:
    """Frames OpenCV decodes from ``path``."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def video_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of the first frame OpenCV decodes from ``path``."""
    cap = cv2.VideoCapture(str(path))
    ok, image = cap.read()
    cap.release()
    assert ok, path
    return image.shape[1], image.shape[0]


def grouped(events: list[EventEnvelope]) -> dict[str, list[EventEnvelope]]:
    """Events by type."""
    out: dict[str, list[EventEnvelope]] = defaultdict(list)
    for event in events:
        out[event.type].append(event)
    return out


async def run_in_thread(runtime: WorkerRuntime, workload: Callable[..., Any], request: RunRequest) -> Any:
    """``runtime.run`` off the test's event loop."""
    return await asyncio.to_thread(runtime.run, workload, request)


@contextlib.contextmanager
def closing(runtime: WorkerRuntime) -> Iterator[WorkerRuntime]:
    """Close ``runtime`` at the end of the block."""
    try:
        yield runtime
    finally:
        runtime.close()
