"""``gpurelay status`` against a real nats-server and a real dispatcher's /healthz."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from typer.testing import CliRunner, Result

from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import DISPATCH, JOBS, KV_JOBS, WEBHOOK_DELIVERIES, Declarations
from contracts.subjects import Namespace, Subjects
from services.cli.main import app
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.__main__ import health_app
from services.dispatcher.service import Dispatcher
from services.notifier.webhooks.actions import publish_dead_letter
from services.notifier.webhooks.sender import AttemptResult
from tests.support.dispatcher import POSE, dispatcher_settings, local_route, submit, wait_record
from tests.support.events import job_event, publish
from tests.support.http import bound_socket, serve


@pytest.fixture
def env(nats_server: EmbeddedNats, namespace: Namespace, tmp_path: Path) -> dict[str, str]:
    """The CLI's settings: this test's NATS and namespace."""
    return {
        "GPURELAY_NATS_URL": nats_server.url,
        "GPURELAY_NAMESPACE": namespace.name,
        "GPURELAY_DATA_DIR": str(tmp_path / "cli"),
        "COLUMNS": "200",
    }


async def status(args: list[str], env: dict[str, str]) -> Result:
    result = await asyncio.wait_for(asyncio.to_thread(CliRunner().invoke, app, ["status", *args], env=env), 30)
    assert result.exit_code == 0, result.output
    return result


async def report(env: dict[str, str], *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((await status(["--json", *args], env)).stdout)
    return found


def by(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in rows}


async def test_streams_consumer_lag_kv_and_failing_webhooks(
    env: dict[str, str], js: JetStreamContext, declared: Declarations, subjects: Subjects, namespace: Namespace
) -> None:
    for _ in range(3):
        await publish(js, subjects, job_event("acme", "job_a", EventType.JOB_LOG))
    lagging = await js.pull_subscribe(subjects.all_jobs(), durable="probe", stream=namespace.stream(JOBS))
    (held,) = await lagging.fetch(1)  # fetched, not acked: 1 ack pending, 2 pending
    ephemeral = await js.subscribe(subjects.all_jobs(), stream=namespace.stream(JOBS), ordered_consumer=True)
    kv = await js.key_value(namespace.bucket(KV_JOBS))
    await kv.put("acme.job_a", b"{}")
    await kv.put("acme.job_b", b"{}")
    await publish_dead_letter(
        js, subjects, tenant="acme", endpoint_id="whe_dead", event_id="e1", event_type="job.log",
        job_id=None, attempts=4, result=AttemptResult(status=500),
    )  # fmt: skip
    deliver = subjects.webhook_deliver("acme", "whe_retry")
    await js.publish(deliver, b"{}", headers={"Nats-Msg-Id": "d1"})
    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, filter_subject=deliver, ack_wait=30)
    retry = await js.pull_subscribe(
        deliver, durable="whd_probe", stream=namespace.stream(WEBHOOK_DELIVERIES), config=config
    )
    (first,) = await retry.fetch(1)
    await first.nak()
    (again,) = await retry.fetch(1, timeout=5)  # redelivered, and held: a retry under way

    try:
        got, tables = await report(env), (await status([], env)).stdout
    finally:
        await ephemeral.unsubscribe()
    streams = by(got["streams"], "stream")
    assert streams[JOBS]["messages"] == 3
    assert streams[JOBS]["bytes"] > 0
    assert 0 <= streams[JOBS]["oldest_age_s"] < 60
    assert streams["DEADLETTER"]["messages"] == 1
    assert streams[DISPATCH]["oldest_age_s"] is None
    consumers = by(got["consumers"], "consumer")
    assert (consumers["probe"]["num_pending"], consumers["probe"]["num_ack_pending"]) == (2, 1)
    assert "(1 ephemeral)" in consumers
    assert consumers["whd_probe"]["num_redelivered"] == 1
    assert by(got["kv"], "bucket")[KV_JOBS]["keys"] == 2
    failing = by(got["webhooks_failing"], "endpoint")
    assert failing["whe_dead"] == {
        "tenant": "acme",
        "endpoint": "whe_dead",
        "dead_letters": 1,
        "retrying": 0,
        "queued": 0,
    }
    assert failing["whe_retry"]["retrying"] == 1
    assert failing["whe_retry"]["queued"] == 1
    assert got["local_pool"] is None

    for title in ("streams", "consumers", "KV buckets", "dispatch (per kind)", "webhook endpoints failing"):
        assert title in tables
    assert "whe_dead" in tables
    assert "probe" in tables
    await held.ack()
    await again.ack()


@pytest.fixture
def dispatcher_health(
    tmp_path: Path, nats_server: EmbeddedNats, namespace: Namespace
) -> Iterator[tuple[Dispatcher, str]]:
    """A dispatcher (pose runs ``forever``, one at a time, pool of 1) and its /healthz on loopback."""
    settings = dispatcher_settings(nats_server.url, namespace, tmp_path / "data", local_pool_size=1)
    dispatcher = Dispatcher(settings, routes={"pose": local_route("forever", concurrency=1)})
    sock = bound_socket()
    with serve(health_app(dispatcher), sock):
        yield dispatcher, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_running_jobs_per_kind_and_the_pool_from_the_dispatcher(
    env: dict[str, str],
    dispatcher_health: tuple[Dispatcher, str],
    js: JetStreamContext,
    declared: Declarations,
    subjects: Subjects,
    namespace: Namespace,
) -> None:
    dispatcher, url = dispatcher_health
    await dispatcher.start()
    try:
        kv = await js.key_value(namespace.bucket(KV_JOBS))
        first = await submit(js, kv, subjects, POSE)
        await submit(js, kv, subjects, POSE)
        await wait_record(kv, first, lambda r: r.status.value == "running")
        wanted = [{"kind": "pose", "tickets": 2, "running": 1, "waiting": 1, "consumer": True}]
        got: dict[str, Any] = {}

        async def one_running_one_waiting() -> bool:  # the second job's entry and ticket may follow the first's start
            got.update(await report(env, "--dispatcher-url", url))
            return bool(got["dispatch"] == wanted)

        try:
            await wait_for(one_running_one_waiting, 30, "one job running and one waiting", every_s=0.2)
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; last seen: {got.get('dispatch')}") from None
        assert got["local_pool"] == {"size": 1, "started": 1, "idle": 0, "busy": 1}
        assert "local pool" in (await status(["--dispatcher-url", url], env)).stdout
    finally:
        await dispatcher.stop()
