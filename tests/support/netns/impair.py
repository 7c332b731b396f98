"""Putting :mod:`tests.support.netns.proxy` on one host's path, and setting what it does.

:class:`PathProxy` starts the proxy inside the host's namespace and has iptables (nat, in that
namespace) REDIRECT to it: TCP arriving for ``ports_in`` on the host's address (clients and peers
coming in) and TCP the host opens to ``ports_out`` on the run's subnet (its own connections to
peers); the proxy's own connections carry its mark and pass. Install it before the host's server
starts, so that every connection of the host goes through it; until :meth:`PathProxy.impair` it
passes everything at once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from bench.harness.waiting import wait_for
from tests.support.netns.commands import iptables
from tests.support.netns.network import TestNet
from tests.support.netns.process import NsProcess
from tests.support.netns.proxy import MARK, Figures, Impairment

PROXY_PORT = 7999
READY_S = 30.0


class PathProxy:
    """The proxy on host ``host``'s path for ``ports_in`` (arriving) and ``ports_out`` (leaving)."""

    def __init__(self, net: TestNet, host: str, ports_in: list[int], ports_out: list[int], root: Path,
                 env: dict[str, str]) -> None:  # fmt: skip
        self.net, self.host = net, host
        self.ports_in, self.ports_out = ports_in, ports_out
        root.mkdir(parents=True, exist_ok=True)
        self.control = root / f"proxy-{host}.json"
        self.control.write_text("{}")
        argv = [sys.executable, "-m", "tests.support.netns.proxy", str(PROXY_PORT), str(self.control)]
        self.process = NsProcess(net, host, argv, env, root / f"proxy-{host}.log")

    async def install(self) -> None:
        """Start the proxy, wait until it serves, then redirect the host's traffic to it."""
        self.process.launch()
        stats = self.control.with_suffix(".stats")
        await wait_for(stats.exists, READY_S, f"the proxy in {self.host} serving", every_s=0.05)
        netns, address = self.net[self.host].netns, self.net[self.host].address
        assert self.net.subnet is not None
        for port in self.ports_in:
            iptables(netns, "-A", "PREROUTING", "-p", "tcp", "-d", address, "--dport", str(port),
                     "-j", "REDIRECT", "--to-ports", str(PROXY_PORT), table="nat")  # fmt: skip
        for port in self.ports_out:
            iptables(netns, "-A", "OUTPUT", "-p", "tcp", "-d", str(self.net.subnet), "--dport", str(port),
                     "-m", "mark", "!", "--mark", str(MARK), "-j", "REDIRECT", "--to-ports", str(PROXY_PORT),
                     table="nat")  # fmt: skip

    async def impair(self, impairment: Impairment) -> None:
        """Make the link do ``impairment`` from now on (returns once the proxy has it)."""
        await self._send(asdict(impairment))

    async def clear(self) -> None:
        """Let everything through at once again (a stall is lifted)."""
        await self._send({})

    async def figures(self) -> Figures:
        """What the proxy did so far (asked for anew)."""
        stats = await self._send(json.loads(self.control.read_text()))
        return Figures(**json.loads(stats.read_text()))

    async def _send(self, values: dict[str, object]) -> Path:
        """Write the control file, signal the proxy and wait until it answers with its figures."""
        stats = self.control.with_suffix(".stats")
        stats.unlink(missing_ok=True)
        self.control.write_text(json.dumps(values))
        assert self.process.pid is not None, f"the proxy in {self.host} is not running"
        os.kill(self.process.pid, signal.SIGUSR1)
        await wait_for(stats.exists, READY_S, f"the proxy in {self.host} answering", every_s=0.02)
        return stats
