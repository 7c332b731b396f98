"""A dispatcher whose start fails exits (non-zero) instead of hanging on its worker pool; so does one whose
health port is taken (a fault-suite run's dispatcher sat 120 s unready: another test took its port first).

Found by the network-fault suite: on a busy 3-node cluster a JetStream request of the fold's start
timed out (5 s), ``Dispatcher.start`` raised after the local pool had spawned its workers, and
``serve`` never stopped the dispatcher: the process sat in ``waitpid`` for the pool's (non-daemon)
workers for ever, so nothing could restart it. Here the failure is made certain: JOBS takes one
consumer only (a limit its declaration does not change), which ``dispatcher-uploads`` takes first, so
the fold's first partition consumer cannot be created.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from bench.harness.fault_stack import ROUTES, connect_test_client
from bench.harness.service_processes import ServiceProcess, service_env
from contracts.streams import JOBS
from services.common.config import BaseServiceSettings
from services.common.nats.declarations import declare_all
from services.common.nats.server.embedded import EmbeddedNats

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
EXIT_WITHIN_S = 60.0
"""Far more than a stop takes (the pool's workers end at once): past it, the process hangs."""


async def test_a_dispatcher_whose_start_fails_exits(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats") as server:
        settings = BaseServiceSettings(profile="test", nats_url=server.url)
        nc = await connect_test_client(server.url)
        try:
            js = nc.jetstream()
            await declare_all(js, settings)
            jobs = (await js.stream_info(settings.ns.stream(JOBS))).config
            await js.delete_stream(settings.ns.stream(JOBS))  # a stream's consumer limit cannot be lowered
            await js.add_stream(jobs.evolve(max_consumers=1))
        finally:
            await nc.close()
        dispatcher = await dispatcher_on(tmp_path, server)
        assert exit_code(dispatcher, "after its start failed") != 0
        assert "PinnedPullError" in dispatcher.log.read_text()


def exit_code(dispatcher: ServiceProcess, when: str) -> int:
    """Launch ``dispatcher`` and wait for it to exit; fail the test if it hangs (``when``: the case)."""
    dispatcher.launch()
    assert dispatcher.process is not None
    try:
        return dispatcher.process.wait(EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the dispatcher hangs {when}: {dispatcher.log.read_text()[-2000:]}")
    finally:
        dispatcher.stop()


async def dispatcher_on(tmp_path: Path, server: EmbeddedNats, port: int | None = None) -> ServiceProcess:
    """A dispatcher (not started yet) of a declared stack on ``server``; given ``port`` as if it had picked it."""
    nc = await connect_test_client(server.url)
    try:
        await declare_all(nc.jetstream(), BaseServiceSettings(profile="test", nats_url=server.url))
    finally:
        await nc.close()
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES.format(workload="short", concurrency=1, sessions=1, price=1.0))
    env = service_env(server.url, tmp_path / "data", routes, local_pool_size=2, log_level="ERROR")
    dispatcher = ServiceProcess("dispatcher", env, tmp_path / "dispatcher.log")
    if port is not None:
        dispatcher.port, dispatcher.url = port, f"http://127.0.0.1:{port}"
        dispatcher.env |= {"GPURELAY_PORT": str(port), "GPURELAY_URL": dispatcher.url}
    return dispatcher


async def test_a_dispatcher_whose_port_is_taken_exits_before_starting_anything(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats") as server, socket.create_server(("127.0.0.1", 0)) as taken:
        dispatcher = await dispatcher_on(tmp_path, server, taken.getsockname()[1])
        assert exit_code(dispatcher, "on a taken port") != 0
        assert "Address already in use" in dispatcher.log.read_text()


async def test_the_fault_suites_service_whose_port_was_taken_first_starts_again_on_another(tmp_path: Path) -> None:
    """Another test's process can take a port between the harness's pick and the child's bind: the harness
    starts the child again on a new port (a fault-suite run errored on it in setup)."""
    with EmbeddedNats(tmp_path / "nats") as server, socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        dispatcher = await dispatcher_on(tmp_path, server, port)  # as if another process came first
        try:
            await dispatcher.start()
        finally:
            dispatcher.stop()
        assert (dispatcher.starts, dispatcher.port != port) == (2, True)
        assert "Address already in use" in dispatcher.log.read_text()
