"""A notifier whose start-up steps meet a JetStream that answers late asks again instead of failing its start.

A gateway on a loaded 3-node cluster exited during start-up in CI when one JetStream request went unanswered
within its time-out (5 s). Here the server is stopped (SIGSTOP) for longer than that just as the notifier
reads the JOBS stream's config for its SSE feeds, again as it looks for its waiting webhook deliveries, and
again as it makes its fan-out consumer."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import nats
import pytest

from contracts.streams import JOBS, declarations
from contracts.subjects import Namespace
from services.common.nats.declarations import apply_declarations
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.app import running
from services.notifier.sse.hub import Hub
from services.notifier.webhooks.delivery_loops import DeliveryLoops
from services.notifier.webhooks.fanout import FANOUT_DURABLE, FanOut
from tests.support.notifier import notifier_settings
from tests.support.stopping import stalled_at_first_call

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
PAUSE_S = 6.0
"""Longer than the notifier's JetStream time-out (nats-py's default, 5 s): its request goes unanswered."""


async def test_a_notifier_started_while_jetstream_answers_late_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace, stalled = Namespace("late"), list[str]()
    with EmbeddedNats(tmp_path / "nats") as server:
        pid = server.pid
        assert pid is not None
        for cls, name in ((Hub, "start"), (DeliveryLoops, "resume_all"), (FanOut, "declare")):
            monkeypatch.setattr(cls, name, stalled_at_first_call(pid, PAUSE_S, name, getattr(cls, name), stalled))
        try:
            nc = await nats.connect(server.url)
            try:
                await apply_declarations(nc.jetstream(timeout=10), declarations(namespace))
            finally:
                await nc.close()
            async with running(notifier_settings(server.url, namespace, tmp_path / "data")) as state:
                assert stalled == ["start", "resume_all", "declare"]
                fanout = await state.js.consumer_info(namespace.stream(JOBS), FANOUT_DURABLE)
                assert fanout.config.durable_name == FANOUT_DURABLE
        finally:
            os.kill(pid, signal.SIGCONT)
