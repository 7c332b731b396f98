"""Bad input is a 4xx problem document, never a 500: dates at the edge of the calendar, headers of
thousands of digits, over real HTTP, a real WebSocket and raw sockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from websockets.asyncio.client import connect

from contracts.streams import TELEMETRY
from contracts.subjects import Namespace
from services.common.storage import LocalStorage
from services.gateway.headers import TOO_LARGE, decimal
from tests.support.gateway import Gateway, Tenant

ROBOT = "arm-1"
HUGE = "9" * 5000
"""More digits than Python converts to an int (4,300) without raising."""
EDGE_TIMES = [
    "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
    "9999-12-31T23:59:59-05:00",  # after year 9999 in UTC
    "0001-01-01T00:30:00+01:00",
]


def assert_problem(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize("ts", EDGE_TIMES)
async def test_a_sample_time_outside_utc_years_1_to_9999_is_422(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, ts: str
) -> None:
    url = f"/v1/robots/{ROBOT}/joints"
    single = await acme.http.post(url, json={"joint_angles": [0.0] * 6, "ts": ts})
    assert ["body", "ts"] in [e["loc"] for e in assert_problem(single, 422)["errors"]]
    samples = [{"joint_angles": [0.0] * 6}, {"joint_angles": [0.0] * 6, "ts": ts}]
    batch = await acme.http.post(url, json={"samples": samples})
    assert ["body", "samples", 1, "ts"] in [e["loc"] for e in assert_problem(batch, 422)["errors"]]
    assert (await js.stream_info(namespace.stream(TELEMETRY))).state.messages == 0


async def test_a_websocket_sample_time_outside_utc_is_refused_and_the_socket_stays_open(
    gateway: Gateway, acme: Tenant
) -> None:
    url = gateway.url.replace("http://", "ws://") + f"/v1/robots/{ROBOT}/joints/ws"
    headers = {"Authorization": f"Bearer {acme.key}"}
    async with connect(url, additional_headers=headers, proxy=None) as ws:
        await ws.send(json.dumps({"joint_angles": [0.0] * 6, "ts": EDGE_TIMES[0]}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        await ws.send(json.dumps({"joint_angles": [0.0] * 6}))
        await ws.send('{"type": "close"}')
        messages = [json.loads(m) async for m in ws]
        assert ws.close_code == 1000
    assert error["type"] == "error"
    assert error["index"] == 0
    assert error["errors"][0]["loc"] == ["ts"]
    assert messages[-1] == {"type": "ack", "accepted": 1, "rejected": 1}


@pytest.fixture
async def blob_url(gateway: Gateway) -> str:
    async with LocalStorage.from_settings(gateway.settings) as storage:
        await storage.put("v/t/j/clip.bin", bytes(range(256)) * 4, "application/octet-stream")
        return await storage.presign_get("v/t/j/clip.bin")


@pytest.mark.parametrize(
    ("header", "status", "content_range"),
    [
        # RFC 9110 14.1.2: a first-pos at or past the end is unsatisfiable (416) ...
        (f"bytes={HUGE}-", 416, "bytes */1024"),
        (f"bytes={HUGE}-{HUGE}", 416, "bytes */1024"),
        # ... a last-pos past the end means "to the end", a suffix longer than the object "all of it".
        (f"bytes=0-{HUGE}", 206, "bytes 0-1023/1024"),
        (f"bytes=-{HUGE}", 206, "bytes 0-1023/1024"),
        # Leading zeros are still a number.
        ("bytes=" + "0" * 5000 + "10-" + "0" * 5000 + "19", 206, "bytes 10-19/1024"),
    ],
)
async def test_a_range_of_thousands_of_digits_is_answered_by_rfc_9110(
    blob_url: str, header: str, status: int, content_range: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        got = await http.get(blob_url, headers={"Range": header})
    if status == 416:
        assert_problem(got, 416)
    else:
        assert got.status_code == status, got.text
    assert got.headers["content-range"] == content_range


@pytest.mark.parametrize("header", [b"bytes=\xb2-", b"bytes=1-2,3-4", b"items=0-5", b"bytes=5-3x", b"bytes=9-3"])
async def test_a_range_that_is_not_one_valid_byte_range_is_ignored(blob_url: str, header: bytes) -> None:
    """RFC 9110 14.2: a server MAY ignore a Range it does not support or an invalid one: all comes back."""
    async with httpx.AsyncClient(timeout=30) as http:
        got = await http.get(blob_url, headers={"Range": header})
    assert got.status_code == 200
    assert len(got.content) == 1024


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("1024", 1024), (" 7 ", 7), ("0" * 5000 + "12", 12), (HUGE, TOO_LARGE), ("9" * 20, TOO_LARGE)]
    + [(bad, None) for bad in ("", "-1", "1.5", "0x10", "\xb2", "1 2", "+3", None)],
)
def test_header_decimals_are_read_without_trusting_them(value: str | None, expected: int | None) -> None:
    """Content-Length and Range positions: ASCII digits only, any length, saturating."""
    assert decimal(value) == expected
    if value is not None:
        assert decimal(value.encode("latin-1")) == expected
