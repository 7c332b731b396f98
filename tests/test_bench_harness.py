"""The bench harness: what a failed check shows of a child's log, of a child that exited during start-up,
and of an SSE reader cut short."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench.harness.fault_checks import sse_problems
from bench.harness.fault_clients import SseReader
from bench.harness.fault_stack import FaultStack
from bench.harness.service_processes import ServiceProcess
from contracts.streams import declarations
from contracts.subjects import Namespace
from services.common.nats.server.auth import render_authorization
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.nats_deploy import role_passwords


def test_the_log_excerpt_keeps_warnings_and_errors_of_console_and_json_logs(tmp_path: Path) -> None:
    log = tmp_path / "dispatcher.log"
    lines = [
        "dispatcher ready",
        "01:07:31 INFO  services.dispatcher.service: dispatcher started",
        "01:07:32 WARNING services.common.observability.stop_clock: dispatcher took 9.8 s to stop: tasks 9.1 s",
        "01:07:33 ERROR services.dispatcher.fold.acks: dispatcher-fold-3: a batch failed",
        json.dumps({"level": "INFO", "message": "quiet"}),
        json.dumps({"level": "WARNING", "message": "NATS connection lost; reconnecting"}),
    ]
    log.write_text("\n".join(lines) + "\n")
    excerpt = ServiceProcess("dispatcher", {}, log).log_excerpt()
    assert excerpt.splitlines() == ["dispatcher, last of 3 warnings and errors:", lines[2], lines[3], lines[5]]


async def test_a_child_that_exits_during_start_up_is_reported_with_its_last_error(tmp_path: Path) -> None:
    """A CI summary shows an error's first line only, and the child's log is gone with the run: the line
    names why the child exited. Here a gateway as its role's user on a server where nothing is declared."""
    users = role_passwords()
    authorization = render_authorization(Namespace(), declarations(Namespace()), users)
    with EmbeddedNats(tmp_path / "nats", authorization=authorization) as server:
        gateway = FaultStack(tmp_path / "stack", server.url, users=users).gateway
        try:
            with pytest.raises(RuntimeError) as raised:
                await gateway.start(timeout_s=60)
        finally:
            gateway.stop()
    first_line = str(raised.value).splitlines()[0]
    assert first_line.startswith("gateway exited during start-up (")
    assert "NotDeclaredError: streams " in first_line, first_line


async def test_an_sse_reader_cut_before_its_terminal_event_is_a_problem_not_a_crash() -> None:
    async def reads_forever() -> None:
        await asyncio.sleep(60)

    task = asyncio.create_task(reads_forever())
    reader = SseReader.__new__(SseReader)  # its state, without the task __init__ starts
    reader.job_id, reader.task, reader.events, reader.connections = "job_1", task, [], 2
    reader.failures, reader.last_error = 3, "StreamError('cut')"
    assert sse_problems(reader, []) == [
        "job_1: the SSE reader has not reached a terminal event (0 events read (last: none), 2 openings with "
        "events, 3 without in a row, last error StreamError('cut'))"
    ]
    task.cancel()
    await asyncio.wait([task])
    assert sse_problems(reader, []) == ["job_1: the SSE reader was cancelled before a terminal event"]
