"""A server's port taken by another nats-server between picking it and binding it: the embedded server
never mistakes the other's greeting for its own (a test once ran against a neighbour's server), and a
cluster whose port another process took starts again on new ones (CI's PortTakenError of a monitor port)."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest

from services.common.nats.server import embedded as embedded_nats
from services.common.nats.server.cluster import NatsCluster, wait_jetstream
from services.common.nats.server.embedded import EmbeddedNats
from services.common.nats.server.ports import free_port, server_name_at


def test_a_picked_port_another_server_took_is_picked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddedNats(tmp_path / "neighbour") as neighbour:
        picks = itertools.chain([neighbour.port], iter(free_port, None))
        monkeypatch.setattr(embedded_nats, "free_port", lambda host="127.0.0.1", besides=(): next(picks))
        with EmbeddedNats(tmp_path / "ours") as ours:
            assert ours.port != neighbour.port
            assert ours.pid is not None
            assert ours.pid != neighbour.pid
            assert server_name_at(ours.host, ours.port) != server_name_at(neighbour.host, neighbour.port)


async def test_a_cluster_whose_picked_port_was_taken_starts_again_on_new_ports(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        cluster = NatsCluster(tmp_path / "cluster")
        taken = cluster.nodes[1].monitor_port
        assert taken is not None
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with cluster.start():
            assert cluster.nodes[1].monitor_port != taken
            await wait_jetstream(cluster.url)
            assert [server_name_at(n.host, n.port) for n in cluster.nodes] == ["nats-1", "nats-2", "nats-3"]
