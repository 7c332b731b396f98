"""``gpurelay dev``'s start when NATS is slow to answer: it starts again rather than give up at once.

The slow answer is the one seam here: the operator's declarations raise nats-py's ``TimeoutError``, as
a request to a server busy with fsyncs does after 5 s; everything else is the real stack.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import nats.errors
import pytest

from services.cli import dev
from services.cli.dev import START_ATTEMPTS, DevStack


def slow_declarations(monkeypatch: pytest.MonkeyPatch, timeouts: int) -> list[str]:
    """Make the first ``timeouts`` calls of the operator's declarations time out; the calls made."""
    real, calls = dev.apply_declarations, []

    async def declarations(js: Any, decls: Any) -> Any:
        calls.append("declarations")
        if len(calls) <= timeouts:
            raise nats.errors.TimeoutError
        return await real(js, decls)

    monkeypatch.setattr(dev, "apply_declarations", declarations)
    return calls


async def test_a_start_up_request_that_timed_out_starts_the_stack_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = slow_declarations(monkeypatch, timeouts=START_ATTEMPTS - 1)
    stack = DevStack(data_dir=tmp_path, port=0)
    with caplog.at_level(logging.WARNING, logger=dev.__name__):
        env = await stack.start()
    try:
        assert len(calls) == START_ATTEMPTS
        assert sum("starting again" in r.getMessage() for r in caplog.records) == START_ATTEMPTS - 1
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], timeout=30) as client:
            assert (await client.get("/readyz")).status_code == 200
    finally:
        await stack.stop()


async def test_start_up_requests_that_keep_timing_out_fail_the_start_and_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = slow_declarations(monkeypatch, timeouts=START_ATTEMPTS)
    stack = DevStack(data_dir=tmp_path, port=0)
    with pytest.raises(nats.errors.TimeoutError):
        await stack.start()
    assert len(calls) == START_ATTEMPTS
    assert stack.nats is None
    assert stack.gateway is None
    assert stack.dispatcher is None
    again = DevStack(data_dir=tmp_path, port=0)  # the data dir is unlocked: a later start may use it
    monkeypatch.undo()
    await again.start()
    await again.stop()
