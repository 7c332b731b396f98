"""Every gpurelay process runs on uvloop (:mod:`services.common.event_loop`): the dispatcher as its
own process, a worker's event thread, and ``GPURELAY_EVENT_LOOP=asyncio`` keeps asyncio's loop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
import uvloop

from bench.harness.service_processes import ServiceProcess, service_env
from contracts.subjects import Namespace
from services.common import event_loop
from services.common.nats.server.embedded import EmbeddedNats


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


ROUTES = """
profiles:
  dev:
    pose: {backend: local, function: pose, local: "bench.noop_workload:noop", timeout_s: 30, concurrency: 1}
"""


async def _healthz_loop(dispatcher: ServiceProcess) -> str:
    """The ``event_loop`` a started ``gpurelay dispatcher`` reports on ``/healthz``."""
    await dispatcher.start()
    try:
        async with httpx.AsyncClient(base_url=dispatcher.url, timeout=10) as http:
            return str((await http.get("/healthz")).json()["event_loop"])
    finally:
        dispatcher.stop()


@pytest.mark.timeout(120)
async def test_the_dispatcher_process_runs_on_uvloop_unless_told_otherwise(
    nats_server: EmbeddedNats, namespace: Namespace, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    env = service_env(nats_server.url, tmp_path / "data", routes, namespace=namespace.name, local_pool_size=1)
    assert await _healthz_loop(ServiceProcess("dispatcher", env, tmp_path / "uvloop.log")) == "uvloop"
    asyncio_env = {**env, event_loop.ENV: "asyncio"}
    assert await _healthz_loop(ServiceProcess("dispatcher", asyncio_env, tmp_path / "asyncio.log")) == "asyncio"


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_get_within_keeps_a_cancel_that_lands_as_the_item_arrives(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The item and the cancel land in one loop turn: the wait ends cancelled and the item stays queued
    (3.11's ``wait_for`` returned the item and lost the cancel)."""
    monkeypatch.setenv(event_loop.ENV, kind)

    async def race() -> tuple[bool, int]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        waiting = asyncio.create_task(event_loop.get_within(queue, 5.0))
        await asyncio.sleep(0.05)
        queue.put_nowait("item")
        waiting.cancel()
        await asyncio.wait([waiting], timeout=5.0)
        return waiting.cancelled(), queue.qsize()

    assert event_loop.run(race()) == (True, 1)


async def test_get_within_times_out_and_hands_over_an_item() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    with pytest.raises(TimeoutError):
        await event_loop.get_within(queue, 0.05)
    queue.put_nowait(7)
    assert await event_loop.get_within(queue, 1.0) == 7
