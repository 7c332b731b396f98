"""The lean webhook HTTP client: keep-alive reuse, chunked and long bodies, the SSRF check, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.common.ssrf import SsrfError
from services.notifier.http1 import Http1Client
from services.notifier.sender import Sender

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
