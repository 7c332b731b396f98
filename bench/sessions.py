"""Live sessions: WS ack latency, frame → worker latency, and a compressed soak with the RSS of both sides.

Four processes: nats-server (:class:`EmbeddedNats`), the gateway as production runs it (``python -m
services.cli.main gateway``: uvicorn, uvloop and httptools when installed), a worker process
(:mod:`bench.session_worker`: the local pool's session input path, ``NatsSessionFeed`` →
``SessionInput`` polled by a thread) and this one, the client. Every frame is the same 640x480 JPEG
(textured, quality 90, ~80 KB). Times are ``time.monotonic()`` (CLOCK_MONOTONIC, shared by every
process on the machine); every send is open loop, timed from when it was due (no coordinated omission).

1. WS ack latency on ``WS /v1/sessions/{id}/stream`` at :data:`ACK_FPS` frames/s for
   :data:`ACK_SECONDS` s: due → ``{"type": "ack"}``; the median of :data:`REPEATS` rounds, a new
   session each.
2. Frame → worker latency at :data:`FEED_FPS` frames/s: ``POST /v1/sessions/{id}/frames`` (raw
   ``image/jpeg``, one keep-alive connection), due → the worker's poll handing the frame out; the
   median of :data:`REPEATS` rounds of :data:`FEED_SECONDS` s. Baseline: the same bytes and headers
   JetStream-published from here (each ack awaited, as the gateway does) to one FRAMES subject, read
   in the worker process by a plain ordered consumer.
3. Soak: :data:`SOAK_FPS` frames/s on the socket (each after a ``{"type": "frame", "ts"}`` message) and
   :data:`SOAK_JOINTS_HZ` Hz joint samples on ``WS /v1/robots/{id}/joints/ws`` for :data:`SOAK_SECONDS`
   s, a splat session bound to that robot, its worker matching a joint sample to every frame; the RSS
   of the gateway and of the worker :data:`SOAK_WARMUP_S` s in and at the end. Every frame and every
   joint sample must reach the worker.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
from nats.js import JetStreamContext
from websockets.asyncio.client import connect

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPEATS, Result, format_table, median
from bench.session_worker import WorkerProcess, gateway, rss_mb
from contracts.event_ids import frame_msg_id
from contracts.session_feed import H_SEQ, H_TS
from contracts.streams import KV_APIKEYS
from contracts.subjects import Namespace, Subjects
from services.common.auth.apikeys import ApiKeyStore
from services.common.nats.server.embedded import EmbeddedNats

NAMESPACE = Namespace("bench")
TENANT = "bench"
ACK_FPS, ACK_SECONDS = 15.0, 10.0
FEED_FPS, FEED_SECONDS = 30.0, 5.0
SOAK_FPS, SOAK_JOINTS_HZ, SOAK_SECONDS, SOAK_WARMUP_S = 5.0, 30.0, 60.0, 5.0
WARMUP_FRAMES = 20
TIMEOUT_S = 30.0
TARGET_ACK_P99_MS = 20.0
Sent = dict[int, tuple[float, float]]
"""Frames sent: {seq: (when it was due, when its ack or answer came)}."""

NOTES = [
    "sessions: four processes on the same shared cores: nats-server, the gateway (`python -m "
    "services.cli.main gateway`, as deployed), a worker process running the local pool's session input "
    "(NatsSessionFeed → SessionInput, polled by a thread as a workload does) and the client. Frames are "
    "one 640x480 JPEG (textured, quality 90, ~80 KB); every send is open loop, timed from when it was due.",
    f"sessions: the WS ack p99 target (≤ {TARGET_ACK_P99_MS:.0f} ms, lower is better) is carried in the "
    f"figure's name; {ACK_FPS:.0f} frames/s for {ACK_SECONDS:.0f} s on one socket, median of {REPEATS} "
    "rounds. An ack follows the frame's JetStream publish ack (the frame is stored), before any inference.",
    f"sessions: frame → worker is POST /v1/sessions/{{id}}/frames at {FEED_FPS:.0f} frames/s (one keep-alive "
    "connection) to the moment the worker's SessionInput.poll hands the frame out, in another process; that "
    "input expects no joints, as a vlm session's (a splat session's waits for each frame's joint sample, see "
    "the soak). Baseline: the same bytes JetStream-published (ack awaited) and read by a plain ordered "
    "consumer in that process.",
    f"sessions: the soak is compressed ({SOAK_FPS:.0f} frames/s on the socket + {SOAK_JOINTS_HZ:.0f} Hz joint "
    f"samples on the robots WebSocket for {SOAK_SECONDS:.0f} s, one splat session bound to the robot); RSS "
    f"'start' is read {SOAK_WARMUP_S:.0f} s in (after warm-up), 'end' after the last frame reached the "
    "worker, which runs the input path only (no model). Bounded means the growth stays small. Its frame "
    "latency includes waiting for the joint sample at or after the frame's capture time (30 Hz: up to ~33 ms).",
    "sessions (where the time goes; profiled: time stamps along the path and the gateway's CPU profile, quiet "
    "machine): the per-frame KV counter write (a round trip and an fsync, as much as the frame's own publish) is "
    "gone: frames are numbered by their FRAMES subject (Nats-Expected-Last-Subject-Sequence); FastAPI's route "
    "matching and dependency solving took more of the gateway's CPU than the frame's own work (~24 parameter "
    "parses a request): a raw frame POST is served by PlainFrameRoute; gateway CPU per frame 2.3-2.6 -> 1.4 ms, "
    "nats-server 1.45 -> 1.07 ms (same run, before and after). Left over raw: ~0.25 ms from the request's "
    "arrival to the handler, ~0.15 ms in the handler before the publish, ~0.1 ms handing the frame to the "
    "worker's poll thread, and the extra process hop (client → gateway → NATS) the raw path does not take.",
    "sessions (the frames ratio's spread, 2026-11-26): the POST → worker p50 ratio moves more from run to run "
    "than any change to the gateway's path: this module's run gave 1.23x, and seven more runs of the same "
    "rounds (feed_latency and feed_baseline) within the hour gave 1.26-1.48x, median 1.44x, so the 1.3x target "
    "is not met reliably. Serving raw frame POSTs with the whole middleware stack skipped (an experiment, not "
    "kept) gave 1.20x and 1.41x against 1.26x and 1.48x in the same alternation: within the spread.",
]


def jpeg_frame() -> bytes:
    """A 640x480 JPEG at quality 90: a colour gradient with blurred texture and noise (~80 KB)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(12)
    y, x = np.mgrid[0:480, 0:640]
    image = np.stack([x * 255 / 640, y * 255 / 480, (x + y) * 255 / 1120], -1)
    texture = cv2.GaussianBlur(rng.normal(0, 40, (480, 640, 3)), (0, 0), 2)
    image = np.clip(image + texture + rng.normal(0, 6, (480, 640, 3)), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("OpenCV could not encode the frame")
    return encoded.tobytes()


def percentile_ms(seconds: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``seconds``, in ms."""
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


async def until_due(due: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``due``."""
    if (delay := due - time.monotonic()) > 0:
        await asyncio.sleep(delay)


class Client:
    """This process's side: sessions, frames over the socket or HTTP, joint samples."""

    def __init__(self, port: int, key: str, frame: bytes) -> None:
        self.port, self.key, self.frame = port, key, frame
        self.headers = {"Authorization": f"Bearer {key}"}

    async def session(self, robot_id: str | None = None) -> str:
        """A new splat session's id."""
        body = {"kind": "splat"} | ({"robot_id": robot_id} if robot_id else {})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", headers=self.headers) as http:
            created = await http.post("/v1/sessions", json=body)
        if created.status_code != 201:
            raise RuntimeError(f"POST /v1/sessions answered {created.status_code}: {created.text[:300]}")
        session_id: str = created.json()["id"]
        return session_id

    async def ws_frames(self, session_id: str, count: int, fps: float, *, meta: bool = False) -> Sent:
        """Send ``count`` frames on the session socket at ``fps``; {seq: (due, ack time)} once all are acked.

        With ``meta`` each frame follows a ``{"type": "frame", "ts": <now>}`` message (its capture
        time). Acks come in the order of the frames, so the n-th ack is the n-th frame's.
        """
        url = f"ws://127.0.0.1:{self.port}/v1/sessions/{session_id}/stream"
        dues: list[float] = []
        acked: Sent = {}
        async with connect(url, additional_headers=self.headers, compression=None, proxy=None) as ws:

            async def read_acks() -> None:
                async for raw in ws:
                    now, message = time.monotonic(), json.loads(raw)
                    if message["type"] == "ack":
                        acked[message["seq"]] = (dues[len(acked)], now)
                        if len(acked) == count:
                            return
                    elif message["type"] == "error":
                        raise RuntimeError(f"the session socket answered {message}")
                raise RuntimeError("the session socket closed before every frame was acked")

            reader = asyncio.create_task(read_acks())
            start = time.monotonic() + 0.05
            for i in range(count):
                await until_due(due := start + i / fps)
                dues.append(due)
                if meta:
                    await ws.send(json.dumps({"type": "frame", "ts": time.time()}))
                await ws.send(self.frame)
                if reader.done():
                    break
            await asyncio.wait_for(reader, TIMEOUT_S)
        return acked

    async def post_frames(self, session_id: str, count: int, fps: float) -> Sent:
        """POST ``count`` frames at ``fps`` on one keep-alive connection; {seq: (due, answer time)}."""
        head = (
            f"POST /v1/sessions/{session_id}/frames HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.key}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(self.frame)}\r\n\r\n"
        ).encode()
        sent: Sent = {}
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            start = time.monotonic() + 0.05
            for i in range(count):
                await until_due(due := start + i / fps)
                writer.write(head + self.frame)
                answer = await reader.readuntil(b"\r\n\r\n")
                length = next(int(h[15:]) for h in answer.split(b"\r\n") if h.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                if answer[9:12] != b"202":
                    raise RuntimeError(f"POST frames answered {answer[:12]!r}: {body[:300]!r}")
                sent[json.loads(body)["seq"]] = (due, time.monotonic())
        finally:
            writer.close()
        return sent

    async def joints(self, robot_id: str, seconds: float, hz: float) -> int:
        """Send joint samples at ``hz`` for ``seconds`` on the robot's socket; how many were accepted."""
        url = f"ws://127.0.0.1:{self.port}/v1/robots/{robot_id}/joints/ws"
        count = int(seconds * hz)
        last: dict[str, object] = {}
        async with connect(url, additional_headers=self.headers, compression=None, proxy=None) as ws:

            async def read_acks() -> None:  # read as they come: unread acks would stall the socket's pings
                async for raw in ws:
                    last.update(json.loads(raw))

            reader = asyncio.create_task(read_acks())
            start = time.monotonic() + 0.05
            for i in range(count):
                await until_due(start + i / hz)
                angles = [round(0.5 * ((i + j) % 7) - 1.5, 4) for j in range(6)]
                await ws.send(json.dumps({"joint_angles": angles, "ts": time.time()}))
            await ws.send('{"type": "close"}')
            await asyncio.wait_for(reader, TIMEOUT_S)
        if last.get("accepted") != count:
            raise RuntimeError(f"the robot socket's final answer {last} does not accept all {count} samples")
        return count


def worker_latencies(sent: Sent, worker: WorkerProcess) -> list[float]:
    """Seconds from each frame's due time to the worker's handout."""
    return [worker.frames[seq][0] - due for seq, (due, _) in sent.items()]


def p50_p99(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in ms."""
    return percentile_ms(seconds, 0.5), percentile_ms(seconds, 0.99)


async def ack_latency(client: Client) -> tuple[float, float]:
    """Figure 1: (p50, p99) ms of WS acks at :data:`ACK_FPS`, the median of :data:`REPEATS` rounds."""
    await client.ws_frames(await client.session(), WARMUP_FRAMES, ACK_FPS)
    rounds = []
    for _ in range(REPEATS):
        acked = await client.ws_frames(await client.session(), int(ACK_FPS * ACK_SECONDS), ACK_FPS)
        rounds.append(p50_p99([at - due for due, at in acked.values()]))
    return median(r[0] for r in rounds), median(r[1] for r in rounds)


async def feed_latency(client: Client, nats_url: str) -> tuple[float, float]:
    """Figure 2: (p50, p99) ms from POST to the worker's handout at :data:`FEED_FPS`, median of rounds."""
    session = await client.session()
    count, rounds = int(FEED_FPS * FEED_SECONDS), []
    async with WorkerProcess(nats_url, NAMESPACE.name, "--session", session, "--robot", session) as worker:
        await worker.wait_frames(await client.post_frames(session, WARMUP_FRAMES, FEED_FPS))
        for _ in range(REPEATS):
            sent = await client.post_frames(session, count, FEED_FPS)
            await worker.wait_frames(sent)
            rounds.append(p50_p99(worker_latencies(sent, worker)))
        stats = await worker.close()
    if stats.get("frames_dropped") != 0 or stats.get("frames_received") != WARMUP_FRAMES + REPEATS * count:
        raise RuntimeError(f"the worker lost frames: {stats}")
    return median(r[0] for r in rounds), median(r[1] for r in rounds)


async def publish_frames(js: JetStreamContext, subject: str, first: int, count: int, frame: bytes) -> Sent:
    """JetStream-publish ``count`` frames at :data:`FEED_FPS` with the gateway's headers; {seq: (due, ack)}."""
    sent: Sent = {}
    start = time.monotonic() + 0.05
    for seq in range(first, first + count):
        await until_due(due := start + (seq - first) / FEED_FPS)
        headers = {"Nats-Msg-Id": frame_msg_id("baseline", seq), H_SEQ: str(seq), H_TS: repr(time.time())}
        await js.publish(subject, frame, headers=headers | {"Content-Type": "image/jpeg"}, timeout=TIMEOUT_S)
        sent[seq] = (due, time.monotonic())
    return sent


async def feed_baseline(js: JetStreamContext, nats_url: str, frame: bytes) -> tuple[float, float]:
    """Figure 2's baseline: (p50, p99) ms of publish → a plain ordered consumer in the worker process."""
    subject = Subjects(NAMESPACE).session_frames(TENANT, "baseline")
    count, rounds = int(FEED_FPS * FEED_SECONDS), []
    async with WorkerProcess(nats_url, NAMESPACE.name, "--raw", subject) as worker:
        await worker.wait_frames(await publish_frames(js, subject, 1, WARMUP_FRAMES, frame))
        for r in range(REPEATS):
            sent = await publish_frames(js, subject, WARMUP_FRAMES + 1 + r * count, count, frame)
            await worker.wait_frames(sent)
            rounds.append(p50_p99(worker_latencies(sent, worker)))
        await worker.close()
    return median(r[0] for r in rounds), median(r[1] for r in rounds)


async def soak(client: Client, nats_url: str, gateway_pid: int) -> dict[str, float]:
    """Figure 3: frames and joints for :data:`SOAK_SECONDS`; latency, matching and both sides' RSS."""
    robot = "bench-arm"
    session = await client.session(robot)
    args = ("--session", session, "--robot", robot, "--joints")
    async with WorkerProcess(nats_url, NAMESPACE.name, *args) as worker:
        frames = asyncio.create_task(client.ws_frames(session, int(SOAK_FPS * SOAK_SECONDS), SOAK_FPS, meta=True))
        joints = asyncio.create_task(client.joints(robot, SOAK_SECONDS, SOAK_JOINTS_HZ))
        await asyncio.sleep(SOAK_WARMUP_S)
        start = {"gateway": rss_mb(gateway_pid), "worker": rss_mb(worker.pid)}
        sent, accepted = await frames, await joints
        await worker.wait_frames(sent)
        await worker.until(lambda: worker.joints >= accepted)
        end = {"gateway": rss_mb(gateway_pid), "worker": rss_mb(worker.pid)}
        latencies = worker_latencies(sent, worker)
        matched = sum(worker.frames[seq][1] for seq in sent)
        stats = await worker.close()
    if stats.get("frames_dropped") != 0 or stats.get("joints_received") != accepted:
        raise RuntimeError(f"the worker lost frames or joint samples ({accepted} accepted): {stats}")
    p50, p99 = p50_p99(latencies)
    figures = {"p50": p50, "p99": p99, "matched": 100 * matched / len(sent)}
    figures |= {f"{side}_{moment}": rss[side] for side in start for moment, rss in (("start", start), ("end", end))}
    return figures


async def measure() -> list[Result]:
    """Every figure of this benchmark against a fresh server and gateway."""
    frame = jpeg_frame()
    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp, EmbeddedNats(Path(tmp) / "n") as server:
        async with gateway(server.url, NAMESPACE.name, Path(tmp) / "data") as (port, pid):
            nc = await nats.connect(server.url, connect_timeout=5)
            js = nc.jetstream()
            _, key = await ApiKeyStore(await js.key_value(NAMESPACE.bucket(KV_APIKEYS))).create(TENANT)
            client = Client(port, key, frame)
            ack50, ack99 = await ack_latency(client)
            feed50, feed99 = await feed_latency(client, server.url)
            base50, base99 = await feed_baseline(js, server.url, frame)
            s = await soak(client, server.url, pid)
            await nc.close()
    kb, raw = f"640x480 JPEG ~{len(frame) // 1000} KB", "baseline: JetStream publish → ordered consumer"
    soak_label = f"{SOAK_FPS:.0f} frames/s + {SOAK_JOINTS_HZ:.0f} Hz joints for {SOAK_SECONDS:.0f} s"
    return [
        Result(f"sessions: WS frame ack p50 at {ACK_FPS:.0f} frames/s ({kb})", ack50, "ms"),
        Result(
            f"sessions: WS frame ack p99 at {ACK_FPS:.0f} frames/s (target ≤ {TARGET_ACK_P99_MS:.0f} ms)", ack99, "ms"
        ),
        Result.compare(
            f"sessions: frame POST → worker poll p50 at {FEED_FPS:.0f} frames/s ({raw})", feed50, "ms", base50
        ),
        Result.compare(
            f"sessions: frame POST → worker poll p99 at {FEED_FPS:.0f} frames/s ({raw})", feed99, "ms", base99
        ),
        Result(f"sessions soak: frame → worker poll p50, joints matched ({soak_label})", s["p50"], "ms"),
        Result(f"sessions soak: frame → worker poll p99, joints matched ({soak_label})", s["p99"], "ms"),
        Result("sessions soak: frames with a joint sample matched", s["matched"], "%"),
        Result.compare(
            "sessions soak: gateway RSS at the end (baseline: at the start)", s["gateway_end"], "MB", s["gateway_start"]
        ),
        Result("sessions soak: gateway RSS growth", s["gateway_end"] - s["gateway_start"], "MB"),
        Result.compare(
            "sessions soak: worker RSS at the end (baseline: at the start)", s["worker_end"], "MB", s["worker_start"]
        ),
        Result("sessions soak: worker RSS growth", s["worker_end"] - s["worker_start"], "MB"),
    ]


def run() -> list[Result]:
    """Run the live-session benchmark, print its table and return its figures."""
    results = asyncio.run(measure())
    print(format_table(results))
    return results


if __name__ == "__main__":
    run()
