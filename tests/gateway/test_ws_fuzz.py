"""Bad messages on every WebSocket the gateway serves get the protocol's answer, never an unhandled error.

The sockets: a session's stream, a robot's joints, a remote worker's session feed (the notifier
serves none). Each gets, before its credential (as the first message) and after it, messages that
used to crash a handler or that parse badly: nesting deeper than any parser recurses, bytes that
are not UTF-8 (a binary frame where text goes, and a text frame of raw invalid bytes), numbers that
overflow (``1e400``, an integer of 5,000 digits), ``NaN`` and ``Infinity``, lone surrogates, the
wrong JSON types, fields far too long. Every message is answered, on a fresh connection, with the
protocol's error message or a close code of 1003, 1007, 1008, 1009 or 4xxx; the server logs no
error (an unhandled exception is logged by uvicorn), and each socket still serves a good client after.
Real uvicorn on loopback, real ``websockets`` clients, a real nats-server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.harness.secrets import INGEST_SECRET
from services.common.auth.ingest_tokens import mint_ingest_token
from tests.support.gateway import Tenant
from tests.support.sessions import jpeg, next_json, open_socket, ws_url

ROBOT = "arm-fuzz"
ZEROS_16 = ", ".join(["0"] * 16)
BAD: dict[str, str | bytes] = {
    "deep": "[" * 10_000,
    "deeper": "[" * 100_000,
    "deep-object": '{"a":' * 2_500,
    "nan": '{"auth": NaN, "type": "frame", "ts": NaN, "joint_angles": [NaN, 0, 0, 0, 0, 0]}',
    "infinity": '{"type": "frame", "pose": [Infinity, ' + ZEROS_16[3:] + "]}",
    "minus-infinity": '{"joint_angles": [-Infinity, 0, 0, 0, 0, 0], "auth": -Infinity}',
    "overflowing-float": '{"auth": 1e400, "type": "frame", "ts": 1e400, "joint_angles": [1e400, 0, 0, 0, 0, 0]}',
    "overflowing-int": '{"type": "frame", "ts": ' + "9" * 5_000 + ', "seq": ' + "9" * 5_000 + "}",
    "lone-surrogate": '{"\\ud800": "\\udfff", "auth": "\\ud800", "type": "\\ud800"}',
    "not-json": "{not json",
    "a-list": '[{"auth": "x"}, {"type": "stop"}]',
    "a-string": '"auth"',
    "null": "null",
    "strings-for-numbers": '{"type": "frame", "ts": "soon", "pose": "' + ZEROS_16 + '", "joint_angles": ["0"]}',
    "numbers-for-strings": '{"auth": 42, "type": 7, "joint_angles": 3}',
    "oversize-field": '{"auth": "' + "k" * 15_000 + '"}',
    "oversize-list": '{"type": "frame", "pose": [' + ", ".join(["0"] * 5_000) + '], "joint_angles": [0]}',
    "binary": b"\x00\x01\x02 not text \xff",
    "invalid-utf8-text": b'{"auth": "\xff\xfe"}',
}
ERROR_CLOSES = {1003, 1007, 1008, 1009}


@dataclass
class Socket:
    """One socket of the gateway: its URL and the credential it takes."""

    name: str
    url: str
    credential: str


@pytest.fixture
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """Every record of level ERROR or more logged in this process while the test runs (uvicorn logs an
    unhandled exception as "Exception in ASGI application" on ``uvicorn.error``, which does not
    propagate to the root logger)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


async def send(ws: ClientConnection, message: str | bytes, name: str) -> None:
    if name == "invalid-utf8-text":
        assert isinstance(message, bytes)
        await ws.send(message, text=True)  # a text frame of bytes that are not UTF-8
    else:
        await ws.send(message)


async def answer(ws: ClientConnection, timeout_s: float = 15.0) -> tuple[str, object]:
    """``("error", message)`` for the protocol's error message, or ``("closed", code)``; other messages
    (acks) are passed over."""
    try:
        async with asyncio.timeout(timeout_s):
            async for raw in ws:
                message = json.loads(raw) if isinstance(raw, str) else None
                if isinstance(message, dict) and message.get("type") == "error":
                    return "error", message
    except ConnectionClosed:
        pass
    return "closed", ws.close_code


def refused_properly(outcome: tuple[str, object]) -> bool:
    kind, detail = outcome
    if kind == "error":
        return True
    return isinstance(detail, int) and (detail in ERROR_CLOSES or 4000 <= detail <= 4999)


async def sockets(acme: Tenant) -> dict[str, Socket]:
    session = (await acme.http.post("/v1/sessions", json={"kind": "vlm"})).json()
    token = mint_ingest_token(INGEST_SECRET.encode(), "acme", session["id"], 1, ttl_s=600)
    base = ws_url(str(acme.http.base_url).rstrip("/"))
    return {
        "stream": Socket("stream", session["urls"]["stream"], acme.key),
        "joints": Socket("joints", f"{base}/v1/robots/{ROBOT}/joints/ws", acme.key),
        "feed": Socket("feed", f"{base}/v1/internal/sessions/{session['id']}/feed", token),
    }


async def still_serves(socket: Socket, acme: Tenant) -> None:
    """A good client of ``socket`` gets what it asks for."""
    async with open_socket(socket.url, socket.credential) as ws:
        if socket.name == "stream":
            await ws.send(jpeg(1))
            assert (await next_json(ws))["type"] == "ack"
        elif socket.name == "joints":
            await ws.send(json.dumps({"joint_angles": [0.1] * 6}))
            await ws.send(json.dumps({"type": "close"}))
            acks = [json.loads(m) async for m in ws]
            assert acks[-1]["accepted"] == 1
        else:
            session_id = socket.url.split("/")[-2]
            frame = await acme.http.post(
                f"/v1/sessions/{session_id}/frames", content=jpeg(2), headers={"Content-Type": "image/jpeg"}
            )
            assert frame.status_code == 202, frame.text
            relayed = await asyncio.wait_for(ws.recv(), 15)
            if isinstance(relayed, str):  # the feed opens with where FRAMES stood (its backlog mark)
                assert json.loads(relayed)["type"] == "backlog"
                relayed = await asyncio.wait_for(ws.recv(), 15)
            assert isinstance(relayed, bytes)
            assert relayed.endswith(jpeg(2))


@pytest.mark.parametrize("phase", ["before-auth", "after-auth"])
@pytest.mark.parametrize("which", ["stream", "joints", "feed"])
async def test_every_bad_message_gets_the_protocols_answer_and_nothing_crashes(
    acme: Tenant, server_errors: list[logging.LogRecord], which: str, phase: str
) -> None:
    socket = (await sockets(acme))[which]
    outcomes = {}
    for name, message in BAD.items():
        credential = socket.credential if phase == "after-auth" else None
        async with open_socket(socket.url, credential, max_size=None) as ws:
            await send(ws, message, name)
            outcomes[name] = await answer(ws)
    wrong = {name: outcome for name, outcome in outcomes.items() if not refused_properly(outcome)}
    assert wrong == {}
    if phase == "before-auth":  # no message is a credential: each is refused as one, or by the protocol
        assert [name for name, outcome in outcomes.items() if outcome[0] == "error"] == []
    await still_serves(socket, acme)
    assert [record.getMessage() for record in server_errors] == []
