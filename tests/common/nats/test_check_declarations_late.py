"""A service's look at its declared streams while JetStream answers late: asked again, not a failed start.

A fresh clone's CI run had a gateway on a loaded 3-node cluster exit during start-up: a service connected
as its role's user only checks that its streams are there (``check_declarations``), and one look went
unanswered within the JetStream context's time-out. Here the server is stopped (SIGSTOP) while the check
runs, with a short time-out, and goes on a moment later."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.streams import declarations
from contracts.subjects import Namespace
from services.common.nats.declarations import NotDeclaredError, apply_declarations, check_declarations
from tests.support.stopping import stallable_server, through_a_stall


async def test_a_check_while_jetstream_answers_late_asks_again_and_finds_every_stream(tmp_path: Path) -> None:
    async with stallable_server(tmp_path / "nats") as (pid, js):
        await apply_declarations(js, declarations(Namespace("late")))
        names = [stream.config.name or "" for stream in await js.streams_info()]
        report = await through_a_stall(pid, lambda: check_declarations(js, names))
        assert sorted(report.unchanged) == sorted(names) != []
        with pytest.raises(NotDeclaredError, match="NOT_THERE"):  # a missing stream is still named, not retried
            await check_declarations(js, [names[0], "NOT_THERE"])
