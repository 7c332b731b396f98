"""Joint-angle ingest: the gateway's robots routes under load, against raw nats-py on the same run.

Starts its own :class:`EmbeddedNats` and the gateway in a separate process (``uvicorn --factory``,
one worker, uvloop and httptools when installed), so the load generator here does not share the
server's GIL. Creates an API key, then measures (medians of :data:`REPEATS` runs):

1. single-sample ``POST /v1/robots/{id}/joints``: requests/s and p99 latency, :data:`HTTP_CONNECTIONS`
   keep-alive connections driven by a minimal asyncio HTTP/1.1 client (httpx would be the
   bottleneck here, not the server);
2. batches of :data:`BATCH` samples: samples/s;
3. the WebSocket, one sample per message, :data:`WS_SOCKETS` sockets: samples/s, each socket closed
   with ``{"type": "close"}`` and timed until its final ack;
4. baseline: nats-py core-publishing the same enveloped samples straight to the stream, one
   awaited ack at the end (what the gateway does per batch): msgs/s.

Finally the TELEMETRY stream must hold exactly every sample accepted: none lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import nats
from fastapi import FastAPI
from websockets.asyncio.client import connect

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPEATS, Result, format_table, median, rate
from contracts.api.robots import JointEventEncoder, JointSampleIn, utc_iso
from contracts.streams import KV_APIKEYS, TELEMETRY
from contracts.subjects import Namespace, Subjects
from services.common.auth.apikeys import ApiKeyStore
from services.common.config import WS_MAX_MESSAGE_BYTES
from services.common.nats.server.embedded import EmbeddedNats
from services.common.nats.server.ports import free_port
from services.gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = Namespace("bench")
FACTORY = os.environ.get("GPURELAY_BENCH_FACTORY", "bench.joints_ingest:app_factory")  # to compare variants
HTTP_CONNECTIONS = 32
SINGLE_REQUESTS = 4000
OFFERED_RPS = 2000.0
OFFERED_SECONDS = 2.0
BATCH = 1000
BATCH_CONNECTIONS = 4
BATCHES = 100
WS_SOCKETS = 4
WS_MESSAGES = 15_000
BASELINE_MESSAGES = 100_000
TIMEOUT_S = 60.0

TARGET_SINGLE_RPS = 2000.0
TARGET_P99_MS = 25.0
TARGET_SAMPLES = 50_000.0
_SERVER = [f"--{name}={impl}" for name, impl in (("loop", "uvloop"), ("http", "httptools")) if find_spec(impl)]

NOTES = [
    "joints_ingest: the gateway runs in its own process (one uvicorn worker, "
    f"{' '.join(_SERVER) or 'default loop and h11'}); load generator, nats-server and gateway "
    "share the machine's cores. HTTP figures use a minimal keep-alive HTTP/1.1 client.",
    f"joints_ingest: single-sample throughput is closed-loop ({HTTP_CONNECTIONS} connections, each "
    f"sending its next request on the answer); the p99 target (at most {TARGET_P99_MS:.0f} ms, lower "
    f"is better) is measured open-loop at {OFFERED_RPS:,.0f} requests/s offered over the same "
    "connections, each request timed from when it was due (no coordinated omission).",
    "joints_ingest: the ≥ 50,000 samples/s target is for batches or the WebSocket; the WebSocket "
    "figure has no target of its own. Every sample is one enveloped robot.joints event (~300 "
    "bytes); the baseline core-publishes the same bytes from this process with one awaited ack.",
]


class _Published:
    """Samples the gateway acknowledged, to check the stream against at the end."""

    count = 0


def app_factory() -> FastAPI:
    """The gateway for ``uvicorn --factory``, configured by ``GPURELAY_*`` variables."""
    from services.gateway.app import create_app

    return create_app(GatewaySettings())


def _angles(i: int) -> list[float]:
    return [round(((i * 7 + j) % 12_000) / 2000 - 3.0, 4) for j in range(6)]


def _sample(i: int) -> dict[str, Any]:
    return {"joint_angles": _angles(i), "seq": i}


def _post(port: int, key: str, robot: str, body: bytes) -> bytes:
    head = (
        f"POST /v1/robots/{robot}/joints HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


Plan = list[tuple[float | None, bytes]]
"""Requests of one connection, each with the perf_counter time it is due at (``None``: at once)."""


async def _connection(port: int, plan: Plan, latencies: list[float]) -> None:
    """Send the plan on one keep-alive connection; every answer must be 202."""
    clock = time.perf_counter  # not loop.time(): uvloop's has millisecond steps
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for due, request in plan:
            if due is not None and (delay := due - clock()) > 0:
                await asyncio.sleep(delay)
            start = clock() if due is None else due
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(h[15:]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            latencies.append(clock() - start)
            if head[9:12] != b"202":
                raise RuntimeError(f"POST answered {head[:12]!r}: {body[:300]!r}")
    finally:
        writer.close()


async def _run_plans(port: int, plans: list[Plan], samples_each: int) -> tuple[float, list[float]]:
    """(seconds, sorted latencies) of running ``plans`` at once."""
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(_connection(port, plan, latencies) for plan in plans)), TIMEOUT_S)
    elapsed = time.perf_counter() - start
    _Published.count += len(latencies) * samples_each
    return elapsed, sorted(latencies)


def _p99_ms(latencies: list[float]) -> float:
    return latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000


def _singles(port: int, key: str, count: int) -> list[list[bytes]]:
    """``count`` single-sample requests dealt round-robin over the connections, one robot each."""
    return [
        [_post(port, key, f"single-{c}", json.dumps(_sample(i)).encode()) for i in range(c, count, HTTP_CONNECTIONS)]
        for c in range(HTTP_CONNECTIONS)
    ]


async def single_samples(port: int, key: str, count: int = SINGLE_REQUESTS) -> tuple[float, float]:
    """Closed loop: (requests/s, p99 ms) of single-sample POSTs, each connection as fast as it can."""
    plans: list[Plan] = [[(None, r) for r in requests] for requests in _singles(port, key, count)]
    elapsed, latencies = await _run_plans(port, plans, 1)
    return rate(len(latencies), elapsed), _p99_ms(latencies)


async def single_samples_offered(port: int, key: str, offered: float = OFFERED_RPS) -> float:
    """Open loop: p99 ms of single-sample POSTs sent at ``offered`` requests/s."""
    count = int(offered * OFFERED_SECONDS)
    t0 = time.perf_counter() + 0.05
    plans: list[Plan] = [
        [(t0 + (c + n * HTTP_CONNECTIONS) / offered, r) for n, r in enumerate(requests)]
        for c, requests in enumerate(_singles(port, key, count))
    ]
    _, latencies = await _run_plans(port, plans, 1)
    return _p99_ms(latencies)


async def batches(port: int, key: str, count: int = BATCHES) -> float:
    """samples/s of batch POSTs of :data:`BATCH` samples over a few connections."""
    body = json.dumps({"samples": [_sample(i) for i in range(BATCH)]}).encode()
    per_connection = count // BATCH_CONNECTIONS
    plans: list[Plan] = [
        [(None, _post(port, key, f"batch-{c}", body))] * per_connection for c in range(BATCH_CONNECTIONS)
    ]
    elapsed, latencies = await _run_plans(port, plans, BATCH)
    return rate(len(latencies) * BATCH, elapsed)


async def _ws_robot(port: int, key: str, robot: str, texts: list[str]) -> None:
    url = f"ws://127.0.0.1:{port}/v1/robots/{robot}/joints/ws"
    headers = {"Authorization": f"Bearer {key}"}
    async with connect(url, additional_headers=headers, compression=None, proxy=None, max_queue=None) as ws:

        async def read_final_ack() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] != "ack":
                    raise RuntimeError(f"WebSocket error: {message}")
                if message["accepted"] == len(texts):
                    return
            raise RuntimeError("WebSocket closed before its final ack")

        reader = asyncio.create_task(read_final_ack())
        for text in texts:
            await ws.send(text)
        await ws.send('{"type": "close"}')
        await reader
    _Published.count += len(texts)


async def websockets_(port: int, key: str, count: int = WS_MESSAGES) -> float:
    """samples/s over :data:`WS_SOCKETS` WebSockets, one sample per message, until the final acks."""
    texts = [json.dumps(_sample(i)) for i in range(count)]
    start = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(_ws_robot(port, key, f"ws-{s}", texts) for s in range(WS_SOCKETS))), TIMEOUT_S
    )
    return rate(WS_SOCKETS * count, time.perf_counter() - start)


async def raw_nats(url: str) -> float:
    """msgs/s of nats-py core-publishing the same enveloped samples, one awaited ack at the end."""
    encoder = JointEventEncoder("bench", "raw-nats")
    received = utc_iso(datetime.now(UTC)).encode()
    samples = [JointSampleIn.model_validate(_sample(i)) for i in range(BASELINE_MESSAGES)]
    payloads = [encoder.envelope(encoder.data(s, received), received) for s in samples]
    subject = Subjects(NAMESPACE).robot_joints("bench", "raw-nats")
    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        start = time.perf_counter()
        for payload in payloads[:-1]:
            await nc.publish(subject, payload)
        await js.publish(subject, payloads[-1], timeout=TIMEOUT_S)
        elapsed = time.perf_counter() - start
        _Published.count += len(payloads)
        return rate(len(payloads), elapsed)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def _gateway(nats_url: str, data_dir: Path) -> AsyncIterator[int]:
    """The gateway in its own uvicorn process, ready; yields its port and ends the process after."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GPURELAY_PROFILE": "test",
        "GPURELAY_NATS_URL": nats_url,
        "GPURELAY_NAMESPACE": NAMESPACE.name,
        "GPURELAY_DATA_DIR": str(data_dir),
        "GPURELAY_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", FACTORY, "--host=127.0.0.1", f"--port={port}"]
    command += ["--workers=1", "--no-access-log", "--log-level=warning", f"--ws-max-size={WS_MAX_MESSAGE_BYTES}"]
    command += _SERVER
    process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            deadline = time.monotonic() + TIMEOUT_S
            while process.returncode is None and time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"the gateway did not become ready (exit code {process.returncode})")
        yield port
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def measure(repeats: int = REPEATS) -> list[Result]:
    """Every figure of this benchmark against a fresh server and gateway."""
    _Published.count = 0
    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp, EmbeddedNats(Path(tmp) / "n") as server:
        async with _gateway(server.url, Path(tmp) / "data") as port:
            nc = await nats.connect(server.url, connect_timeout=5)
            js = nc.jetstream()
            _, key = await ApiKeyStore(await js.key_value(NAMESPACE.bucket(KV_APIKEYS))).create("bench")
            await single_samples(port, key, 640)  # warm every path up
            await batches(port, key, 8)
            await websockets_(port, key, 1000)
            singles = [await single_samples(port, key) for _ in range(repeats)]
            p99 = median([await single_samples_offered(port, key) for _ in range(repeats)])
            batch = median([await batches(port, key) for _ in range(repeats)])
            ws = median([await websockets_(port, key) for _ in range(repeats)])
            baseline = median([await raw_nats(server.url) for _ in range(repeats)])
            stored = (await js.stream_info(NAMESPACE.stream(TELEMETRY))).state.messages
            await nc.close()
    if stored != _Published.count:
        raise RuntimeError(f"TELEMETRY holds {stored} samples, {_Published.count} were accepted: some were lost")
    rps, saturated_p99 = median(r for r, _ in singles), median(p for _, p in singles)
    n, conns = "baseline: raw NATS", f"{HTTP_CONNECTIONS} connections"
    return [
        Result.compare(
            f"robots: HTTP single-sample POST ({conns}; {n})", rps, "requests/s", baseline, TARGET_SINGLE_RPS
        ),
        Result(f"robots: HTTP single-sample p99, closed loop ({conns})", saturated_p99, "ms"),
        Result(
            f"robots: HTTP single-sample p99 at {OFFERED_RPS:,.0f}/s offered (target ≤ {TARGET_P99_MS:.0f})", p99, "ms"
        ),
        Result.compare(
            f"robots: HTTP batches of {BATCH} ({BATCH_CONNECTIONS} connections; {n})",
            batch,
            "samples/s",
            baseline,
            TARGET_SAMPLES,
        ),
        Result.compare(f"robots: WebSocket, 1 sample a message ({WS_SOCKETS} sockets; {n})", ws, "samples/s", baseline),
    ]


def _asyncio_run(coro: Coroutine[Any, Any, list[Result]]) -> list[Result]:
    """Run ``coro`` on uvloop when installed (a lighter load generator), else on asyncio's loop."""
    loop_factory = None
    if find_spec("uvloop"):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


def run() -> list[Result]:
    """Run the joint-ingest benchmark, print its table and return its figures."""
    results = _asyncio_run(measure())
    print(format_table(results))
    return results


if __name__ == "__main__":
    run()
