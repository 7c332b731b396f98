"""The embedded nats-server's Go scheduler: GOMAXPROCS half the usable cores unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from services.common.nats import embedded as embedded_nats
from services.common.nats.embedded import EmbeddedNats, default_gomaxprocs


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_the_default_is_half_the_usable_cores_and_at_least_one(
    monkeypatch: pytest.MonkeyPatch, cores: int, expected: int
) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    monkeypatch.setattr(embedded_nats, "usable_cores", lambda: cores)
    assert default_gomaxprocs() == expected


@pytest.mark.parametrize("value", ["", "0", "x"])
def test_a_gomaxprocs_in_the_environment_wins_only_when_it_is_a_count(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setattr(embedded_nats, "usable_cores", lambda: 8)
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
