"""The operator's commands that speak NATS themselves give up on an unreachable NATS and say so.

A service's connection tries for ever (a broker restart must not end it); a command run by hand did
the same, printing a connection error twice a second until Ctrl-C (``gpurelay replay`` with the stack
down, or a wrong ``GPURELAY_NATS_URL``). :func:`services.cli.client.nats_connection` stops after
``NATS_WAIT_S`` with one line naming the URL.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from services.cli import client
from services.cli.main import app
from services.common.nats.server.ports import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "args", [["replay", "--limit", "1"], ["replay", "--rebuild", "jobs"], ["status"], ["keys", "ls"]]
)
def test_a_command_exits_1_naming_nats_when_nobody_answers(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setattr(client, "NATS_WAIT_S", 1.0)
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(app, args, env={"GPURELAY_NATS_URL": url, "GPURELAY_NATS_CONNECT_TIMEOUT_S": "0.5"})
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert f"cannot reach NATS at {url} within 1 s" in said
    assert "Traceback" not in result.output
