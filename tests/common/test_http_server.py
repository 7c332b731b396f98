"""The embedded HTTP server's connections send small writes at once (no Nagle delay), and an idle
keep-alive connection outlives the clients' own idle expiry.

uvicorn writes a response's head and body apart; on a connection with Nagle's algorithm on, every
keep-alive answer after the first waited for the client's delayed ACK (40 ms on Linux): each
``POST /v1/jobs`` of ``gpurelay dev`` took 44-48 ms. The accepted sockets themselves are checked.
"""

from __future__ import annotations

import asyncio
import socket

import httpx
from fastapi import FastAPI

from services.common.http_server import KEEP_ALIVE_S, EmbeddedHttpServer, tcp_listener
from tests.support.http import bound_socket, serve


def app() -> FastAPI:
    api = FastAPI()

    @api.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    return api


def nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def accepted_sockets(server: object) -> list[socket.socket]:
    """The sockets of the connections a uvicorn server holds open."""
    return [conn.transport.get_extra_info("socket") for conn in server.server_state.connections]  # type: ignore[attr-defined]


async def test_the_embedded_servers_connections_have_nagle_off() -> None:
    server = EmbeddedHttpServer()
    await server.start(app())
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for _ in range(3):  # one keep-alive connection
                assert (await client.get("/ping")).json() == {"ok": True}
            (conn,) = accepted_sockets(server._server)
            assert nodelay(conn) == 1
    finally:
        await server.stop()


def test_a_listener_made_for_a_server_passes_tcp_nodelay_on() -> None:
    with tcp_listener("127.0.0.1", 0) as listener:
        assert listener.proto == socket.IPPROTO_TCP  # what asyncio looks for before turning Nagle off
        assert nodelay(listener) == 1


def test_the_test_servers_socket_is_a_tcp_listener_too() -> None:
    with bound_socket() as sock, serve(app(), sock):
        port = sock.getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/ping").status_code == 200
        assert sock.proto == socket.IPPROTO_TCP
        assert nodelay(sock) == 1


async def test_an_idle_keep_alive_connection_outlives_the_clients_expiry() -> None:
    """httpx drops a connection idle for 5 s; a server that closed at 5 s too raced its reuse (a POST
    answered ``ReadError``). One idle longer than the client's expiry is still served."""
    client_expiry_s = httpx.Limits().keepalive_expiry or 0.0
    assert 2 * client_expiry_s < KEEP_ALIVE_S
    server = EmbeddedHttpServer()
    await server.start(app())
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        request = f"GET /ping HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode()
        for pause_s in (0.0, client_expiry_s + 0.5):  # the second request after the client's expiry
            await asyncio.sleep(pause_s)
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            assert await reader.readexactly(length) == b'{"ok":true}'
        writer.close()
    finally:
        await server.stop()
