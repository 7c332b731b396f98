"""A server's port taken by another nats-server between picking it and binding it: the embedded server
never mistakes the other's greeting for its own (a test once ran against a neighbour's server)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from services.common.nats import embedded as embedded_nats
from services.common.nats.embedded import EmbeddedNats, server_name_at


def test_a_picked_port_another_server_took_is_picked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddedNats(tmp_path / "neighbour") as neighbour:
        free = embedded_nats.free_port
        picks = itertools.chain([neighbour.port], iter(free, None))
        monkeypatch.setattr(embedded_nats, "free_port", lambda host="127.0.0.1": next(picks))
        with EmbeddedNats(tmp_path / "ours") as ours:
            assert ours.port != neighbour.port
            assert ours.pid is not None
            assert ours.pid != neighbour.pid
            assert server_name_at(ours.host, ours.port) != server_name_at(neighbour.host, neighbour.port)
