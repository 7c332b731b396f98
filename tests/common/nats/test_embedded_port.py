"""A server's port taken by another nats-server between picking it and binding it: the embedded server
never mistakes the other's greeting for its own (a test once ran against a neighbour's server)."""

from __future__ import annotations

import itertools
from pathlib import Path

import nats
import pytest

from services.common.nats import embedded as embedded_nats
from services.common.nats.embedded import EmbeddedNats, PortTakenError, server_name_at


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


async def test_a_given_port_another_server_holds_is_an_error(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "neighbour") as neighbour:
        ours = EmbeddedNats(tmp_path / "ours", port=neighbour.port)
        with pytest.raises(PortTakenError):
            ours.start()
        assert ours.pid is None  # stopped: nothing of ours is left running
        nc = await nats.connect(neighbour.url)  # the neighbour still serves
        await nc.close()
