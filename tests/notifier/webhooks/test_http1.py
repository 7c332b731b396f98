"""The lean webhook HTTP client: keep-alive reuse, chunked and long bodies, the SSRF check, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bench.harness.waiting import wait_for
from services.common.ssrf import SsrfError
from services.notifier.webhooks.http1 import Http1Client, ProtocolError
from services.notifier.webhooks.sender import Sender

ANSWERS = {
    "/ok": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    "/chunked": b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "/busy": b"HTTP/1.1 503 Busy\r\nretry-after: 7\r\ncontent-length: 0\r\n\r\n",
    "/close": b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nbye",
    "/redirect": b"HTTP/1.1 302 Found\r\nlocation: http://10.0.0.1/\r\ncontent-length: 0\r\n\r\n",
}


class Server:
    """Answers from ``ANSWERS`` by path; records request lines and the connections opened."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while line := await reader.readline():
                self.requests.append(line)
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":")[1])
                await reader.readexactly(length)
                path = line.split()[1].decode().split("?")[0]
                if path == "/slow":
                    await asyncio.sleep(5)
                writer.write(ANSWERS[path])
                await writer.drain()
                if path == "/close":
                    break
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    srv = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    yield state, f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    srv.close()


async def test_keep_alive_is_reused_and_bodies_are_drained(server: tuple[Server, str]) -> None:
    state, base = server
    client = Http1Client(("127.0.0.1",))
    for path in ("/ok", "/chunked?x=1", "/ok", "/busy"):
        await client.post(base + path, b"{}", {"content-type": "application/json"})
    assert state.connections == 1
    assert state.requests[1] == b"POST /chunked?x=1 HTTP/1.1\r\n"
    response = await client.post(base + "/close", b"{}", {})
    assert response.status == 200
    assert (await client.post(base + "/ok", b"{}", {})).status == 200
    assert state.connections == 2
    await client.aclose()


async def test_sender_classifies_and_refuses(server: tuple[Server, str]) -> None:
    _, base = server
    sender = Sender(["127.0.0.1"], allow_http=False, timeout_s=0.5)
    busy = await sender.send(base + "/busy", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "evt_1", b"{}")
    assert busy.status == 503
    assert busy.retry_after_s == 7.0
    redirect = await sender.send(base + "/redirect", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "evt_1", b"{}")
    assert redirect.status == 302
    assert not redirect.delivered
    slow = await sender.send(base + "/slow", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "evt_1", b"{}")
    assert slow.error == "timed out"
    await sender.aclose()
    guarded = Sender([], allow_http=False, timeout_s=0.5)
    refused = await guarded.send(base + "/ok", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "evt_1", b"{}")
    assert refused.error is not None
    assert refused.error.startswith("refused by the SSRF guard")
    with pytest.raises(SsrfError):
        await Http1Client().post("http://10.0.0.1/", b"", {})


class Scripted:
    """A raw HTTP/1.1 server on loopback that answers each request with the next raw bytes of ``answers``
    (on any connection) and records connections opened and closed by the client."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.opened = 0
        self.closed = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        try:
            while line := await reader.readline():
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":")[1])
                self.requests.append(line + await reader.readexactly(length))
                writer.write(self.answers.pop(0))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed += 1
            writer.close()


async def _scripted(answers: list[bytes]) -> tuple[Scripted, asyncio.Server, str]:
    state = Scripted(answers)
    srv = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    return state, srv, f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"


INTERIM = {
    "100 Continue": b"HTTP/1.1 100 Continue\r\n\r\n",
    "103 Early Hints": b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n",
    "both": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
}


@pytest.mark.parametrize("interim", list(INTERIM))
async def test_informational_responses_are_skipped_to_the_final_one(interim: str) -> None:
    final = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops"
    state, srv, base = await _scripted([INTERIM[interim] + final, b"HTTP/1.1 204 No Content\r\n\r\n"])
    client = Http1Client(("127.0.0.1",))
    try:
        first = await client.post(base + "/a", b"{}", {})
        second = await client.post(base + "/b", b"{}", {})
    finally:
        await client.aclose()
        srv.close()
    assert (first.status, second.status) == (500, 204)  # the 500 is not left for the next request
    assert state.opened == 1  # and the connection stayed usable


async def test_101_is_refused_and_its_connection_not_reused() -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
    state, srv, base = await _scripted([switch, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"])
    client = Http1Client(("127.0.0.1",))
    try:
        with pytest.raises(ProtocolError):
            await client.post(base + "/a", b"{}", {})
        assert (await client.post(base + "/b", b"{}", {})).status == 200
    finally:
        await client.aclose()
        srv.close()
    assert state.opened == 2
    assert len(state.requests) == 2  # the refused request was not sent twice


UNKNOWN_STATE = {
    "a stray second response": b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n" + b"HTTP/1.1 500 X\r\n\r\n",
    "a bad chunk end": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
    "conflicting lengths": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 7\r\n\r\nokHTTP/1",
    "length and chunked": b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "a non-ASCII length": "HTTP/1.1 200 OK\r\ncontent-length: ²\r\n\r\n".encode(),
}


@pytest.mark.parametrize("case", list(UNKNOWN_STATE))
async def test_a_connection_in_an_unknown_state_is_never_reused(case: str) -> None:
    state, srv, base = await _scripted([UNKNOWN_STATE[case], b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"])
    client = Http1Client(("127.0.0.1",))
    try:
        with contextlib.suppress(ProtocolError, ValueError):
            await client.post(base + "/a", b"{}", {})
        assert (await client.post(base + "/b", b"{}", {})).status == 202
    finally:
        await client.aclose()
        srv.close()
    assert state.opened == 2


async def test_a_timed_out_exchange_is_not_reused() -> None:
    state, srv, base = await _scripted([b"", b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"])
    client = Http1Client(("127.0.0.1",))
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.post(base + "/never", b"{}", {})  # the server answers nothing
        assert (await client.post(base + "/b", b"{}", {})).status == 201
    finally:
        await client.aclose()
        srv.close()
    assert state.opened == 2


async def test_idle_connections_expire_and_the_pool_is_capped() -> None:
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    servers = [await _scripted([ok] * 4) for _ in range(3)]
    client = Http1Client(("127.0.0.1",), pool_idle_s=0.5, pool_max_idle=2)
    try:
        for _, _, base in servers:
            await client.post(base + "/", b"{}", {})
        (a, _, _), (b, _, b_base), (c, _, _) = servers
        await wait_for(lambda: a.closed == 1, 5, "the least recently used connection evicted")
        assert (b.closed, c.closed) == (0, 0)
        await client.post(b_base + "/", b"{}", {})
        assert b.opened == 1  # B's idle connection was reused
        await wait_for(lambda: b.closed == 1 and c.closed == 1, 5, "idle connections closed after pool_idle_s")
    finally:
        await client.aclose()
        for _, srv, _ in servers:
            srv.close()
