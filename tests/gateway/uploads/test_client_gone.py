"""A client that goes away in the middle of an upload's bytes (a tab closed, a laptop lid shut) is
logged as that, at INFO: no "unhandled error" traceback at ERROR for an operator to chase, and no
partial file left; the same signed URL takes the whole file afterwards."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.gateway import Gateway, Tenant, presign

SIZE = 1_000_000
GONE_WAIT_S = 10.0


async def _cut_short(signed: dict[str, Any], data: bytes, sent: int) -> None:
    """PUT ``data`` declared whole, send ``sent`` bytes of it, then close the connection."""
    url = urlsplit(signed["url"])
    _, writer = await asyncio.open_connection(url.hostname, url.port)
    headers = {k: v for k, v in signed["headers"].items() if k.lower() != "content-length"}
    head = [f"PUT {url.path}?{url.query} HTTP/1.1", f"Host: {url.netloc}", f"Content-Length: {len(data)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data[:sent])
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def _told(record: logging.LogRecord) -> bool:
    """The gateway's word on the cut request: the INFO line, or an error (what it logged before)."""
    return "client went away" in record.getMessage() or record.levelno >= logging.ERROR


class _Told(logging.Handler):
    """Sets :attr:`event` (on the test's loop, from the server's thread) once the gateway has told."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.loop, self.event = asyncio.get_running_loop(), asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if _told(record):
            self.loop.call_soon_threadsafe(self.event.set)


async def test_a_client_gone_mid_upload_is_told_at_info_not_as_a_server_error(
    acme: Tenant, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data = os.urandom(SIZE)
    signed = await presign(acme, SIZE)
    told = _Told()
    logging.getLogger().addHandler(told)
    try:
        await _cut_short(signed, data, sent=SIZE // 10)
        async with asyncio.timeout(GONE_WAIT_S):
            await told.event.wait()
    finally:
        logging.getLogger().removeHandler(told)

    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert [r.levelname for r in caplog.records if "client went away" in r.getMessage()] == ["INFO"]
    assert list((gateway.settings.local_storage_dir / "tmp").iterdir()) == []

    async with httpx.AsyncClient(timeout=30) as http:
        whole = await http.request(signed["method"], signed["url"], headers=signed["headers"], content=data)
    assert whole.status_code == 201, whole.text
