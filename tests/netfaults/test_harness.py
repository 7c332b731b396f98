"""The network-namespace harness itself: its faults cut and heal real links, its proxy delays, loses
and stalls without corrupting a byte, and a run leaves nothing behind, even one that was SIGKILLed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness.service_processes import ROOT
from services.common.processes import is_running
from tests.netfaults.conftest import require_netns
from tests.support.netns import guard
from tests.support.netns.commands import run
from tests.support.netns.faults import NetFaults
from tests.support.netns.impair import PathProxy
from tests.support.netns.network import TestNet, list_namespaces
from tests.support.netns.process import NsProcess
from tests.support.netns.proxy import Impairment

pytestmark = [pytest.mark.netfaults, pytest.mark.timeout(120)]
PORT = 9000
ECHO = (
    "import asyncio\n"
    "async def echo(r, w):\n"
    "    while data := await r.read(65536):\n"
    "        w.write(data); await w.drain()\n"
    "    w.close()\n"
    "async def main():\n"
    f"    server = await asyncio.start_server(echo, '0.0.0.0', {PORT})\n"
    "    await server.serve_forever()\n"
    "asyncio.run(main())\n"
)


def traces(run_id: str) -> list[str]:
    """Whatever of run ``run_id`` this machine still has: namespaces, links, iptables rules, its record."""
    found = [f"netns {ns}" for ns in list_namespaces() if ns.startswith(run_id)]
    found += [f"link {line}" for line in run("ip", "-o", "link").splitlines() if run_id in line]
    found += [f"iptables {line}" for line in run("iptables-save").splitlines() if run_id in line]
    return found + ([f"record {guard.RUNS / run_id}"] if (guard.RUNS / run_id).exists() else [])


@pytest.fixture
def net(tmp_path: Path) -> Iterator[TestNet]:
    """Two hosts, ``a`` and ``b``, an echo server on ``b``; nothing of them left afterwards."""
    require_netns()
    made = TestNet(["a", "b"]).create()
    try:
        echo = NsProcess(made, "b", [sys.executable, "-c", ECHO], dict(os.environ), tmp_path / "echo.log")
        echo.launch()
        wait_connects(made, "a", made["b"].address)
        yield made
    finally:
        made.teardown()
    assert traces(made.run_id) == []


def connects(net: TestNet, source: str, address: str) -> bool:
    """Whether host ``source`` opens a TCP connection to ``address``:PORT within a second."""
    code = f"import socket; socket.create_connection(('{address}', {PORT}), timeout=1).close()"
    done = subprocess.run(net.exec_argv(source, [sys.executable, "-c", code]), capture_output=True, timeout=30)
    return done.returncode == 0


def wait_connects(net: TestNet, source: str, address: str, timeout_s: float = 30.0) -> None:
    """Wait until ``source`` connects to ``address`` (the echo server is up)."""
    deadline = time.monotonic() + timeout_s
    while not connects(net, source, address):
        assert time.monotonic() < deadline, f"{source} never reached {address}:{PORT}"


def test_partitions_blackholes_and_link_down_cut_and_heal(net: TestNet) -> None:
    faults, b = NetFaults(net), net["b"].address
    for cut in (
        lambda: faults.partition("a", ["b"]),
        lambda: faults.blackhole("a", ["b"]),
        lambda: faults.link_down("b"),
    ):
        assert connects(net, "a", b)
        cut()
        assert not connects(net, "a", b)
        faults.heal()
    assert connects(net, "a", b)


async def test_the_proxy_delays_loses_and_stalls_but_never_corrupts(net: TestNet, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proxy = PathProxy(net, "b", [PORT], [], tmp_path / "proxy", env)
    await proxy.install()  # connections to b:PORT from now on go through it
    reader, writer = await asyncio.open_connection(net["b"].address, PORT)
    payload = os.urandom(256 * 1024)

    async def round_trip(data: bytes) -> tuple[bytes, float]:
        began = time.monotonic()
        writer.write(data)
        return await reader.readexactly(len(data)), time.monotonic() - began

    assert (await round_trip(payload))[0] == payload
    await proxy.impair(Impairment(delay_s=0.2, jitter_s=0.05, loss=1.0))  # every chunk "lost": counted for sure
    echoed, took = await round_trip(payload)
    assert echoed == payload  # delayed and "lost" chunks come late, in order, whole
    assert took >= 2 * 0.15  # each way waited at least delay - jitter: a lower bound, never a race
    await proxy.impair(Impairment(stall=True))
    writer.write(b"held")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 1.0)
    await proxy.clear()
    assert await asyncio.wait_for(reader.readexactly(4), 30) == b"held"
    figures = await proxy.figures()
    assert figures.connections >= 1
    assert figures.delayed > 0
    assert figures.lost > 0
    writer.close()


def test_a_sigkilled_run_is_removed_by_the_next(tmp_path: Path) -> None:
    require_netns()
    code = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.support.netns.network import TestNet\n"
        "from tests.support.netns.faults import NetFaults\n"
        "net = TestNet(['x']).create()\n"
        "NetFaults(net).partition('x', [])\n"
        "print(net.run_id, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        orphan = owner.stdout.readline().strip()
        assert traces(orphan), "the run made nothing"
    finally:
        owner.send_signal(signal.SIGKILL)  # no finalizer, no atexit, no signal handler runs
        owner.wait(10)
    assert not is_running(owner.pid)
    assert traces(orphan)  # still there: nothing cleaned up after it
    sweeper = TestNet(["y"]).create()  # the next run sweeps it
    try:
        assert traces(orphan) == []
    finally:
        sweeper.teardown()
    assert traces(sweeper.run_id) == []
