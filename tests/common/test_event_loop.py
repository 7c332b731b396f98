"""Every gpurelay process runs on uvloop (:mod:`services.common.event_loop`): the dispatcher as its
own process, a worker's event thread, and ``GPURELAY_EVENT_LOOP=asyncio`` keeps asyncio's loop."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import httpx
import pytest
import uvloop

from services.common import event_loop
from services.common.embedded_nats import EmbeddedNats, free_port

ROOT = Path(__file__).resolve().parents[2]


async def _kind() -> tuple[str, type[asyncio.AbstractEventLoop]]:
    return event_loop.running_kind(), type(asyncio.get_running_loop())


def test_run_uses_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(event_loop.ENV, raising=False)
    kind, loop_type = event_loop.run(_kind())
    assert kind == "uvloop"
    assert issubclass(loop_type, uvloop.Loop)


def test_the_setting_keeps_asyncios_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.ENV, "asyncio")
    kind, loop_type = event_loop.run(_kind())
    assert kind == "asyncio"
    assert not issubclass(loop_type, uvloop.Loop)


def test_an_unknown_setting_says_so_and_uses_uvloop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(event_loop.ENV, "trio")
    with caplog.at_level(logging.WARNING, logger=event_loop.__name__):
        loop = event_loop.new_event_loop()
    loop.close()
    assert isinstance(loop, uvloop.Loop)
    assert "'trio'" in caplog.text


async def _healthz_loop(env: dict[str, str]) -> str:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.dispatcher", cwd=ROOT, env={**env, "GPURELAY_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            assert (await process.stdout.readline()).strip() == b"dispatcher ready"
        async with httpx.AsyncClient(timeout=10) as http:
            body = (await http.get(f"http://127.0.0.1:{port}/healthz")).json()
        return str(body["event_loop"])
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.timeout(120)
async def test_the_dispatcher_process_runs_on_uvloop_unless_told_otherwise(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
    env.update(
        GPURELAY_PROFILE="test", GPURELAY_NATS_URL=nats_server.url, GPURELAY_NAMESPACE="loopkind",
        GPURELAY_DATA_DIR=str(tmp_path), GPURELAY_LOCAL_POOL_SIZE="1", GPURELAY_LOG_LEVEL="WARNING",
        GPURELAY_HOST="127.0.0.1", PYTHONPATH=str(ROOT),
    )  # fmt: skip
    assert await _healthz_loop(env) == "uvloop"
    assert await _healthz_loop({**env, event_loop.ENV: "asyncio"}) == "asyncio"
