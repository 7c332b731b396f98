"""Per-job order survives a restart: a retry NAKed by one notifier still holds back its job's later events
in the next one, while other jobs' events flow (the delivery reads the consumer's ack-pending range at start).

The notifier is served here (not by the ``notifier`` fixture) so that it can be stopped and started again.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.kv import KeyValue

from bench.harness.receivers import Captured, Receiver
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.app import create_app
from tests.support.events import create_endpoint, create_job, job_event, publish
from tests.support.http import bound_socket, serve
from tests.support.notifier import notifier_settings


async def test_a_retry_pending_across_a_restart_still_holds_back_only_its_job(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    declared: Declarations,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    settings = notifier_settings(
        nats_server.url, namespace, tmp_path / "data", webhook_retry_schedule_s=[0.0, 3.0, 0.2, 0.2, 0.2]
    )
    await create_endpoint(webhooks_kv, "acme", f"{base}/hook")
    job_a, job_b = await create_job(jobs_kv, "acme"), await create_job(jobs_kv, "acme")
    a1, a2 = job_event("acme", job_a, EventType.JOB_LOG), job_event("acme", job_a, EventType.JOB_SUCCEEDED)
    b1 = job_event("acme", job_b, EventType.JOB_SUCCEEDED)
    failing = {a1.id}

    def decide(captured: Captured) -> int | None:
        return 500 if captured.webhook_id in failing else None

    rx.decide = decide
    with serve(create_app(settings), bound_socket()):
        await publish(js, subjects, a1)
        await wait_for(lambda: a1.id in rx.ids("/hook"), what="A's first attempt")
        await asyncio.sleep(0.5)  # the NAK (3 s) reaches the server
    with serve(create_app(settings), bound_socket()):  # a fresh notifier: it never saw A's retry
        await publish(js, subjects, a2)
        await publish(js, subjects, b1)
        await wait_for(lambda: b1.id in rx.ids("/hook"), what="B's event while A retries")
        assert a2.id not in rx.ids("/hook")
        failing.clear()
        await wait_for(lambda: a2.id in rx.ids("/hook"), what="A's next event after the retry")
    assert rx.ids("/hook") == [a1.id, b1.id, a1.id, a2.id]


async def test_an_ack_sent_while_the_consumer_is_asked_never_passes_for_the_unseen_retry(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    declared: Declarations,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restarted delivery holds A's next event behind A's retry it has not seen until the consumer's
    ack-pending count shows nothing unseen is left. An attempt of B that acked while that count was asked
    made the count one lower than the messages the delivery still tracked: A's next event went before
    A's retry (a fresh-clone CI run of tests/faults/test_replicas_under_load.py)."""
    rx, base = receiver
    settings = notifier_settings(
        nats_server.url, namespace, tmp_path / "data", webhook_retry_schedule_s=[0.0, 120.0, 0.2, 0.2, 0.2]
    )
    await create_endpoint(webhooks_kv, "acme", f"{base}/hook")
    job_a, job_b = await create_job(jobs_kv, "acme"), await create_job(jobs_kv, "acme")
    a1, a2 = job_event("acme", job_a, EventType.JOB_LOG), job_event("acme", job_a, EventType.JOB_SUCCEEDED)
    b1, b2 = job_event("acme", job_b, EventType.JOB_LOG), job_event("acme", job_b, EventType.JOB_SUCCEEDED)
    failing = {a1.id}
    rx.decide = lambda captured: 500 if captured.webhook_id in failing else None
    with serve(create_app(settings), bound_socket()):
        await publish(js, subjects, a1)
        await wait_for(lambda: a1.id in rx.ids("/hook"), what="A's first attempt")
        await asyncio.sleep(0.5)  # the NAK (120 s: A's retry never comes in this test) reaches the server
    rx.answer_after = answer = threading.Event()
    asked = asyncio.Event()
    consumer_info = JetStreamContext.PullSubscription.consumer_info

    async def b1_answered_meanwhile(psub: JetStreamContext.PullSubscription) -> ConsumerInfo:
        if armed and psub._consumer.startswith("whd_") and not asked.is_set():
            asked.set()
            answer.set()  # B's first attempt is answered 200 and acked while the count is asked
            await asyncio.sleep(1.0)
        return await consumer_info(psub)

    armed = False
    monkeypatch.setattr(JetStreamContext.PullSubscription, "consumer_info", b1_answered_meanwhile)
    with serve(create_app(settings), bound_socket()):  # a fresh notifier: it never saw A's retry
        await publish(js, subjects, a2)
        await publish(js, subjects, b1)
        await wait_for(lambda: b1.id in rx.ids("/hook"), what="B's first event, not answered yet")
        armed = True
        await publish(js, subjects, b2)  # fetched beside B's attempt: the count is asked again
        await asyncio.wait_for(asked.wait(), 20)
        await wait_for(lambda: b2.id in rx.ids("/hook"), 20, "B's next event, once B's first was acked")
        await asyncio.sleep(0.5)  # A's next event, had it been let go with B's, was sent before B's
    assert rx.ids("/hook") == [a1.id, b1.id, b2.id], "A's next event went before A's retry"
