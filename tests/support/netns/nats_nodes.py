"""A 3-node NATS cluster whose nodes are separate hosts: each in its own namespace, on its own address.

:class:`NsNats` is :class:`~services.common.nats.server.embedded.EmbeddedNats` started through
``ip netns exec`` (its pid is the server's: pause, kill and stop act on it), listening on its host's
address, clients on :data:`CLIENT_PORT` and routes on :data:`ROUTE_PORT` as in
``deploy/nats/cluster/``. :class:`NsCluster` is three of them, every stream and bucket at 3
replicas once the services are told so; given the roles' passwords, each node has a user per role
(:mod:`services.common.nats.server.auth`), as the committed cluster does, and refuses anyone else.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from nats.js import JetStreamContext

from contracts.streams import declarations
from contracts.subjects import Namespace
from services.common.nats.permissions import Role
from services.common.nats.server.auth import render_authorization
from services.common.nats.server.binary import find_nats_server
from services.common.nats.server.config import ClusterConfig
from services.common.nats.server.embedded import EmbeddedNats
from services.common.processes import preexec_die_with_parent
from tests.support.netns.network import TestNet
from tests.support.netns.process import Pausable

CLIENT_PORT = 4222
ROUTE_PORT = 6222
START_S = 30.0


class NsNats(Pausable, EmbeddedNats):
    """nats-server in host ``host`` of ``net``, named after the host, its store under ``store_dir``,
    its users' ``authorization`` block when given one."""

    def __init__(
        self, net: TestNet, host: str, store_dir: Path, cluster: ClusterConfig, authorization: str | None = None
    ) -> None:
        address = net[host].address
        super().__init__(
            store_dir, port=CLIENT_PORT, host=address, server_name=host, cluster=cluster, authorization=authorization
        )
        self.net, self.host_name = net, host

    def launch(self) -> None:
        """Start the server in its namespace (same address, port and store every time); do not wait."""
        if self._process is not None:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        argv = [str(find_nats_server()), "-a", self.host, "-p", str(self.port), "-c", str(self.config_path)]
        with self._log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                self.net.exec_argv(self.host_name, argv), stdout=log_file, stderr=subprocess.STDOUT,
                env={**os.environ, "GOMAXPROCS": str(self.gomaxprocs)}, start_new_session=True,
                preexec_fn=preexec_die_with_parent(signal.SIGTERM),
            )  # fmt: skip
        self.pidfile.write(self._process.pid)


class NsCluster:
    """Nodes ``hosts`` of ``net`` clustered with routes, each with JetStream under ``root/{host}``; with
    ``users`` (passwords by role) each node has those users in the default namespace and no one else."""

    def __init__(
        self, net: TestNet, hosts: list[str], root: Path, name: str = "gpurelay", *,
        users: Mapping[Role, str] | None = None,
    ) -> None:  # fmt: skip
        routes = tuple(f"nats-route://{net[h].address}:{ROUTE_PORT}" for h in hosts)
        ns = Namespace()
        authorization = render_authorization(ns, declarations(ns), users) if users else None
        self.nodes = [
            NsNats(net, h, root / h, ClusterConfig(name=name, port=ROUTE_PORT, routes=routes), authorization)
            for h in hosts
        ]

    @property
    def url(self) -> str:
        """Every node's client URL, separated by commas (``GPURELAY_NATS_URL``)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, host: str) -> NsNats:
        """The node on host ``host``."""
        return next(node for node in self.nodes if node.host_name == host)

    def start(self) -> NsCluster:
        """Launch every node (each retries its routes), then wait until each accepts clients."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready(START_S)
        return self

    def stop(self) -> None:
        """Stop every node (continued first, if paused)."""
        for node in self.nodes:
            node.resume()
            node.stop()

    async def leader(self, js: JetStreamContext, stream: str) -> NsNats:
        """The node that leads ``stream`` now."""
        info = await js.stream_info(stream)
        assert info.cluster is not None
        assert info.cluster.leader, f"{stream} has no leader"
        return self.node(info.cluster.leader)
