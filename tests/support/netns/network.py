"""A run's hosts: one network namespace each, joined by a bridge, in a private /24 of the run's own.

:class:`TestNet` makes ``{prefix}-sw`` (the bridge ``br0``) and one namespace per host, each with an
``eth0`` on the bridge, ``lo`` up and no default route, so a host reaches only the other hosts of
its run. The test process (host namespace) joins the bridge through one veth, ``{prefix}h``, as
``.1``; hosts are ``.11`` onwards. The /24 is drawn at random from 10.200.0.0–10.249.255.0 and
never overlaps a route or address this machine already has (a parallel run's included: the choice
is made under a lock, and the run's route is in place before the lock is let go).

Teardown (:meth:`TestNet.teardown`, also reached from :mod:`tests.support.netns.guard` at exit, on
SIGTERM, and by a later run when this one was SIGKILLed) kills every process in the run's
namespaces, deletes the host's veth and every namespace (their links and iptables rules go with
them) and forgets the run.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import random
import re
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.common.processes import is_running, wait_exited
from tests.support.netns import guard
from tests.support.netns.commands import ip

PREFIX = "gnf"
"""Every namespace and link of every run starts with this; a run adds 5 hex digits of its own."""
LOCK = Path("/run/lock/gpurelay-netns.lock")
POOL = [(a, b) for a in range(200, 250) for b in range(256)]
KILL_WAIT_S = 10.0


@dataclass(frozen=True)
class Host:
    """One host of the run: its namespace and address on the bridge."""

    name: str
    netns: str
    address: str
    port: str
    """Its veth's end in the bridge namespace."""


class TestNet:
    """The hosts ``names`` of one run, on a bridge; :meth:`create` makes them, :meth:`teardown` removes all."""

    __test__ = False  # not a pytest test class

    def __init__(self, names: list[str]) -> None:
        self.run_id = PREFIX + uuid.uuid4().hex[:5]
        self.bridge_ns = f"{self.run_id}-sw"
        self.host_link = f"{self.run_id}h"
        self.names = list(names)
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: dict[str, Host] = {}

    @property
    def client_address(self) -> str:
        """The test process's address on the bridge (``.1``)."""
        assert self.subnet is not None, "create() first"
        return str(self.subnet.network_address + 1)

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of the run, the bridge's last."""
        return [host.netns for host in self.hosts.values()] + [self.bridge_ns]

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def create(self) -> TestNet:
        """Make the bridge, the host's veth and every host; torn down again if any step fails."""
        guard.register(self)
        try:
            LOCK.parent.mkdir(parents=True, exist_ok=True)
            with LOCK.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                guard.sweep_orphans(self.teardown_run)
                self.subnet = _free_subnet()
                guard.record(self.run_id, str(self.subnet))
                self._bridge()
            for index, name in enumerate(self.names):
                self._host(name, str(self.subnet.network_address + 11 + index))
        except BaseException:
            self.teardown()
            raise
        return self

    def _bridge(self) -> None:
        ip("netns", "add", self.bridge_ns)
        ip("link", "add", "br0", "type", "bridge", netns=self.bridge_ns)
        ip("link", "set", "br0", "up", netns=self.bridge_ns)
        ip("link", "add", self.host_link, "type", "veth", "peer", "name", "p-client", "netns", self.bridge_ns)
        ip("link", "set", "p-client", "master", "br0", "up", netns=self.bridge_ns)
        assert self.subnet is not None
        ip("addr", "add", f"{self.client_address}/{self.subnet.prefixlen}", "dev", self.host_link)
        ip("link", "set", self.host_link, "up")

    def _host(self, name: str, address: str) -> None:
        netns, port = f"{self.run_id}-{name}", f"p-{name}"
        ip("netns", "add", netns)
        self.hosts[name] = Host(name, netns, address, port)
        ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns, netns=self.bridge_ns)
        ip("link", "set", port, "master", "br0", "up", netns=self.bridge_ns)
        assert self.subnet is not None
        ip("addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0", netns=netns)
        ip("link", "set", "lo", "up", netns=netns)
        ip("link", "set", "eth0", "up", netns=netns)

    def exec_argv(self, name: str, argv: list[str]) -> list[str]:
        """``argv`` run inside host ``name``'s namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.hosts[name].netns, *argv]

    def teardown(self) -> None:
        """Kill every process in the run's namespaces, delete its links and namespaces, forget the run."""
        self.teardown_run(self.run_id)
        guard.unregister(self)

    @staticmethod
    def teardown_run(run_id: str) -> None:
        """Remove everything of run ``run_id`` that still exists (safe to call again)."""
        mine = [ns for ns in list_namespaces() if ns.startswith(f"{run_id}-")]
        for netns in mine:
            kill_all_in(netns)
        ip("link", "del", f"{run_id}h", check=False)
        for netns in mine:
            ip("netns", "del", netns, check=False)
        guard.forget(run_id)


def list_namespaces() -> list[str]:
    """The names ``ip netns list`` shows."""
    return [line.split()[0] for line in ip("netns", "list", check=False).splitlines() if line.strip()]


def kill_all_in(netns: str) -> None:
    """SIGKILL every process inside ``netns`` (ours: the namespace is the run's) and wait until they are gone."""
    pids = [int(p) for p in ip("netns", "pids", netns, check=False).split() if p.isdigit()]
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):  # a stopped process dies only once continued
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
    for pid in pids:
        if is_running(pid):
            wait_exited(pid, KILL_WAIT_S)


def _taken() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine routes or holds an address in (the default route aside)."""
    text = ip("-4", "route", "show", "table", "all", check=False) + ip("-4", "-o", "addr", check=False)
    found = re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", text)
    return [ipaddress.ip_network(net, strict=False) for net in found]


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 under 10.200.0.0–10.249.255.0 that overlaps nothing this machine has."""
    taken = _taken()
    for a, b in random.sample(POOL, len(POOL)):
        candidate = ipaddress.IPv4Network(f"10.{a}.{b}.0/24")
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise RuntimeError("no free /24 under 10.200.0.0/13 for the network-fault suite")
