"""Network faults between a run's hosts, each undone by :meth:`NetFaults.heal`.

* :meth:`NetFaults.partition`: iptables DROP, both ways, between one host and others (rules in the
  isolated host's own namespace, in a chain ``GNF`` hooked into INPUT and OUTPUT): established TCP
  connections go silent, as across a real partition, and nothing answers a new one;
* :meth:`NetFaults.blackhole`: blackhole routes in one host to others (what it sends is discarded);
* :meth:`NetFaults.link_down`: the host's ``eth0`` down (cut off from everyone, the test included).

Everything lives in the run's namespaces, so the namespaces' teardown removes whatever a failed
test left; :meth:`NetFaults.heal` undoes the active faults in reverse order.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.support.netns.commands import ip, iptables
from tests.support.netns.network import TestNet

CHAIN = "GNF"


class NetFaults:
    """Faults on the links of ``net``; the active ones are kept until :meth:`heal`."""

    def __init__(self, net: TestNet) -> None:
        self.net = net
        self.undo: list[Callable[[], None]] = []
        self._chains: set[str] = set()

    def _chain(self, netns: str) -> None:
        if netns in self._chains:
            return
        iptables(netns, "-N", CHAIN)
        for hook in ("INPUT", "OUTPUT"):
            iptables(netns, "-I", hook, "1", "-j", CHAIN)
        self._chains.add(netns)

    def partition(self, isolated: str, others: list[str]) -> None:
        """Drop every packet between host ``isolated`` and each host of ``others``, both ways."""
        netns = self.net[isolated].netns
        self._chain(netns)
        for other in others:
            address = self.net[other].address
            iptables(netns, "-A", CHAIN, "-s", address, "-j", "DROP")
            iptables(netns, "-A", CHAIN, "-d", address, "-j", "DROP")
        self.undo.append(lambda: iptables(netns, "-F", CHAIN) and None)

    def blackhole(self, host: str, targets: list[str]) -> None:
        """Discard what host ``host`` sends to each of ``targets`` (blackhole routes)."""
        netns = self.net[host].netns
        routes = [f"{self.net[t].address}/32" for t in targets]
        for route in routes:
            ip("route", "add", "blackhole", route, netns=netns)

        def remove() -> None:
            for route in routes:
                ip("route", "del", "blackhole", route, netns=netns, check=False)

        self.undo.append(remove)

    def link_down(self, host: str) -> None:
        """Take host ``host``'s ``eth0`` down (up again on heal; its subnet route comes back with it)."""
        netns = self.net[host].netns
        ip("link", "set", "eth0", "down", netns=netns)
        self.undo.append(lambda: ip("link", "set", "eth0", "up", netns=netns) and None)

    def heal(self) -> None:
        """Undo every active fault, the newest first."""
        while self.undo:
            self.undo.pop()()
