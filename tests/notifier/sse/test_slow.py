"""A stalled SSE client is cut (its consumer freed, memory bounded) and resumes without a gap."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.events.jobs import JobLogPayload
from contracts.events.registry import EventType, job_event_name
from contracts.subjects import Namespace, Subjects
from services.common.auth.apikeys import ApiKeyStore
from tests.notifier.sse.client import SseReader, parse_sse
from tests.support.events import create_job, job_event
from tests.support.notifier import Notifier, sse_streams

pytestmark = pytest.mark.parametrize(
    "notifier_overrides",
    [
        {"sse_buffer": 16, "sse_send_timeout_s": 1.0, "sse_fanout": "shared"},
        {"sse_buffer": 16, "sse_send_timeout_s": 1.0, "sse_fanout": "per_connection"},
    ],
    ids=["shared", "per_connection"],
)
EVENTS = 800


async def test_a_stalled_client_is_cut_and_resumes_with_last_event_id(
    notifier: Notifier,
    keys: ApiKeyStore,
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    namespace: Namespace,
) -> None:
    _, key = await keys.create("acme")
    job_id = await create_job(jobs_kv, "acme")
    port = int(notifier.url.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server blocks soon
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    request = f"GET /v1/jobs/{job_id}/events HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
    await asyncio.get_running_loop().sock_sendall(sock, request.encode())
    await wait_for(lambda: sse_streams(notifier, js), what="the stream's consumer or tap")

    seqs: list[int] = []
    futures = []
    for i in range(EVENTS):
        kind = EventType.JOB_SUCCEEDED if i == EVENTS - 1 else EventType.JOB_LOG
        payload = JobLogPayload(message="x" * 7000) if kind == EventType.JOB_LOG else None
        event = job_event("acme", job_id, kind, payload)
        subject = subjects.job_event("acme", job_id, job_event_name(kind))
        futures.append(await js.publish_async(subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.id}))
    seqs = [int(ack.seq) for ack in await asyncio.gather(*futures)]

    # The client reads nothing: the server cuts it and frees its consumer instead of buffering.
    async def cut() -> bool:
        return await sse_streams(notifier, js) == 0

    await wait_for(cut, timeout_s=20, what="the stalled client cut")
    received = await _read_until_closed(sock)
    text = received.split(b"\r\n\r\n", 1)[1].decode(errors="replace")
    complete = text[: text.rfind("\r\n\r\n") + 4] if "\r\n\r\n" in text else ""
    got = [int(f.id) for f in parse_sse(complete.split("\r\n")) if f.id]
    assert len(got) < EVENTS  # it was cut before the end
    assert got == seqs[: len(got)]

    headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": str(got[-1] if got else 0)}
    async with (
        httpx.AsyncClient(base_url=notifier.url, headers=headers, timeout=30) as http,
        http.stream("GET", f"/v1/jobs/{job_id}/events") as response,
    ):
        reader = SseReader(response.aiter_lines())
        while (frame := await reader.next()) is not None:
            got.append(int(frame.id or 0))
    assert got == seqs  # every event exactly once, in order


async def _read_until_closed(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    chunks = []
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 10):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return b"".join(chunks)
