"""``gpurelay dlq ls|show|redrive`` against the real gateway: dead letters written as the notifier writes them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.js import JetStreamContext

from contracts.events.registry import EventType
from contracts.streams import WEBHOOK_DELIVERIES
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from services.common.webhook_queue import H_EVENT, H_REPLAY_OF
from services.notifier.webhooks.actions import publish_dead_letter
from services.notifier.webhooks.sender import AttemptResult
from tests.cli.test_submit import cli_env, invoke
from tests.support.events import job_event, publish
from tests.support.gateway import Gateway, Tenant


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    """Loopback webhook URLs are allowed."""
    return {"webhook_allow_hosts": ["127.0.0.1"]}


@pytest.fixture
async def env(gateway: Gateway, acme: Tenant, nats_server: EmbeddedNats, namespace: Namespace) -> dict[str, str]:
    """The CLI's settings for acme on this test's gateway."""
    return cli_env(gateway, acme, nats_server.url, namespace)


async def dead(js: JetStreamContext, subjects: Subjects, endpoint_id: str, count: int) -> list[str]:
    """``count`` job events in JOBS, each dead-lettered for the endpoint as the notifier does; their ids."""
    ids = []
    for i in range(count):
        event = job_event("acme", f"job_{i}", EventType.JOB_LOG)
        seq = await publish(js, subjects, event)
        await publish_dead_letter(
            js, subjects, tenant="acme", endpoint_id=endpoint_id, event_id=event.id, event_type=event.type,
            job_id=event.job_id, attempts=4, result=AttemptResult(status=500), source_seq=seq,
        )  # fmt: skip
        ids.append(event.id)
    return ids


async def queued(js: JetStreamContext, namespace: Namespace, subjects: Subjects, endpoint_id: str) -> list[Any]:
    """The deliveries waiting in the endpoint's queue."""
    subject, found, seq = subjects.webhook_deliver("acme", endpoint_id), [], 1
    stream = namespace.stream(WEBHOOK_DELIVERIES)
    info = await js.stream_info(stream)
    while seq <= (info.state.last_seq or 0):
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except Exception:  # noqa: BLE001 - none left
            break
        found.append(msg)
        seq = (msg.seq or seq) + 1
    return found


async def test_ls_show_and_redrive(
    env: dict[str, str], acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    hook = (await acme.http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x"})).json()
    events = await dead(js, subjects, hook["id"], 3)

    listed = await invoke(["dlq", "ls", hook["id"], "--json"], env)
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.stdout)
    assert [d["event_id"] for d in letters] == events
    two = json.loads((await invoke(["dlq", "ls", hook["id"], "--json", "--limit", "2"], env)).stdout)
    assert [d["id"] for d in two] == [d["id"] for d in letters[:2]]
    table = await invoke(["dlq", "ls", hook["id"]], env)
    assert table.exit_code == 0, table.output
    assert "3 dead letters" in table.stdout
    assert all(e in table.stdout for e in events)

    shown = await invoke(["dlq", "show", hook["id"], str(letters[1]["id"])], env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["event"]["id"] == events[1]

    one = await invoke(["dlq", "redrive", hook["id"], "--id", str(letters[0]["id"])], env)
    assert one.exit_code == 0, one.output
    assert "1 redriven" in one.output
    assert "2 dead letters left" in one.output
    rest = await invoke(["dlq", "redrive", hook["id"], "--all", "--json"], env)
    assert rest.exit_code == 0, rest.output
    assert json.loads(rest.stdout)["redriven"] == [d["id"] for d in letters[1:]]
    waiting = await queued(js, namespace, subjects, hook["id"])
    assert [m.headers[H_EVENT] for m in waiting] == events
    assert [m.headers[H_REPLAY_OF] for m in waiting] == [f"DEADLETTER:{d['id']}" for d in letters]
    assert json.loads((await invoke(["dlq", "ls", hook["id"], "--json"], env)).stdout) == []


async def test_errors_exit_non_zero(env: dict[str, str], acme: Tenant) -> None:
    hook = (await acme.http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x"})).json()
    missing = await invoke(["dlq", "redrive", hook["id"], "--id", "12345"], env)
    assert missing.exit_code == 1
    assert "not a dead letter" in missing.output
    assert (await invoke(["dlq", "ls", "whe_nobody"], env)).exit_code == 1
    assert (await invoke(["dlq", "show", hook["id"], "7"], env)).exit_code == 1
    assert (await invoke(["dlq", "redrive", hook["id"]], env)).exit_code == 2
    assert (await invoke(["dlq", "redrive", hook["id"], "--all", "--id", "1"], env)).exit_code == 2
