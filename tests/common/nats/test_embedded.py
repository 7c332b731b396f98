"""The embedded nats-server's Go scheduler (GOMAXPROCS half the usable cores unless told otherwise) and its
JetStream store limit (its own, not a share of the disk free at its start)."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import ServerError

from contracts.streams import declarations
from contracts.subjects import Namespace
from services.common.nats.declarations import apply_declarations
from services.common.nats.server import binary as nats_binary
from services.common.nats.server.binary import default_gomaxprocs
from services.common.nats.server.config import MAX_FILE_STORE
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.nats_deploy import monitor

INSUFFICIENT_STORAGE = 10047
"""JetStream's error code for a stream whose byte cap does not fit the store's limit."""


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_the_default_is_half_the_usable_cores_and_at_least_one(
    monkeypatch: pytest.MonkeyPatch, cores: int, expected: int
) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    monkeypatch.setattr(nats_binary, "usable_cores", lambda: cores)
    assert default_gomaxprocs() == expected


@pytest.mark.parametrize("value", ["", "0", "x"])
def test_a_gomaxprocs_in_the_environment_wins_only_when_it_is_a_count(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setattr(nats_binary, "usable_cores", lambda: 8)
    monkeypatch.setenv("GOMAXPROCS", "3")
    assert default_gomaxprocs() == 3
    monkeypatch.setenv("GOMAXPROCS", value)
    assert default_gomaxprocs() == 4


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads the server's environment from /proc")
async def test_the_server_runs_with_its_gomaxprocs_and_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOMAXPROCS", "7")  # the parameter wins over the environment too
    with EmbeddedNats(tmp_path / "nats", gomaxprocs=2) as server:
        assert server.pid is not None
        assert _environ(server.pid)["GOMAXPROCS"] == "2"
        nc = await nats.connect(server.url)
        try:
            assert (await nc.jetstream().account_info()).streams == 0
        finally:
            await nc.close()


async def test_the_store_limit_is_the_servers_own_and_holds_the_streams_default_caps(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "default", monitor_port=0) as server:
        assert server.monitor_url is not None
        assert (await monitor(server.monitor_url, "varz"))["jetstream"]["config"]["max_storage"] == MAX_FILE_STORE
        nc = await nats.connect(server.url)
        try:  # FRAMES, TELEMETRY and the webhook queue cap 8 GiB between them, whatever the disk has free
            await apply_declarations(nc.jetstream(timeout=10.0), declarations(Namespace("limit")))
        finally:
            await nc.close()
    with EmbeddedNats(tmp_path / "small", max_file_store=4 * 1024**2) as server:
        nc = await nats.connect(server.url)
        try:
            with pytest.raises(ServerError) as refused:
                await nc.jetstream().add_stream(StreamConfig(name="BIG", subjects=["big"], max_bytes=8 * 1024**2))
            assert refused.value.err_code == INSUFFICIENT_STORAGE
        finally:
            await nc.close()
