"""``gpurelay replay --to-webhook``: events delivered again by the real notifier, with their webhook-ids."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from standardwebhooks import Webhook
from typer.testing import CliRunner

from bench.harness.receivers import Receiver
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import WEBHOOK_DELIVERIES
from contracts.subjects import Namespace, Subjects
from services.cli.main import app
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.events import create_endpoint, create_job, job_event, publish
from tests.support.notifier import Notifier


async def replay(args: list[str], nats_server: EmbeddedNats, namespace: Namespace, tmp_path: Path) -> dict[str, Any]:
    """``gpurelay replay ARGS``; its JSON summary."""
    env = {
        "GPURELAY_NATS_URL": nats_server.url,
        "GPURELAY_NAMESPACE": namespace.name,
        "GPURELAY_DATA_DIR": str(tmp_path),
    }
    result = await asyncio.wait_for(asyncio.to_thread(CliRunner().invoke, app, ["replay", *args], env=env), 30)
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


async def queued(js: JetStreamContext, namespace: Namespace) -> int:
    """Messages ever stored in the delivery queues (a work queue: its last sequence)."""
    return int((await js.stream_info(namespace.stream(WEBHOOK_DELIVERIES))).state.last_seq)


async def test_replay_to_a_webhook_keeps_ids_tenant_and_subscription(
    notifier: Notifier,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    namespace: Namespace,
    nats_server: EmbeddedNats,
    tmp_path: Path,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/again", events=["job.log"])
    job_id = await create_job(jobs_kv, "acme")
    logs = [job_event("acme", job_id, EventType.JOB_LOG) for _ in range(2)]
    for event in [
        *logs,
        job_event("acme", job_id, EventType.JOB_SUCCEEDED),
        job_event("globex", "job_g", EventType.JOB_LOG),
    ]:
        await publish(js, subjects, event)
    await wait_for(lambda: len(rx.on("/again")) == 2, what="the first deliveries")
    args = ["--subject", "jobs.>", "--to-webhook", endpoint.id]

    before = await queued(js, namespace)
    dry = await replay([*args, "--dry-run"], nats_server, namespace, tmp_path)
    assert dry["would_send"] == 2
    assert dry["skipped"] == {"another tenant": 1, "type not subscribed": 1}
    assert await queued(js, namespace) == before

    done = await replay(args, nats_server, namespace, tmp_path)
    assert (done["matched"], done["sent"], done["duplicates"]) == (4, 2, 0)
    await wait_for(lambda: len(rx.on("/again")) == 4, what="the replayed deliveries")
    assert rx.ids("/again") == [e.id for e in logs] * 2  # the same webhook-ids, in order: receivers dedupe
    for captured in rx.on("/again")[2:]:
        Webhook(endpoint.secret).verify(captured.body, captured.headers)

    repeated = await replay(args, nats_server, namespace, tmp_path)
    assert (repeated["sent"], repeated["duplicates"]) == (0, 2)  # within the queue's duplicate window
    assert await queued(js, namespace) == before + 2
