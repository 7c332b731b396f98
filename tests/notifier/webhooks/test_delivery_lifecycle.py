"""A deleted or disabled endpoint's delivery stops for good: no consumer churn, no busy loop.

The windows are measured in events: after the change, further events are delivered end to end to
another endpoint (each a fan-out batch plus a delivery cycle) while the server's API audit advisories
record every JetStream request that names the stopped endpoint's consumer.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import FastAPI
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from bench.harness.receivers import Receiver
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.ids import tenant_key
from contracts.streams import WEBHOOK_DELIVERIES, Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.app import create_app
from services.notifier.state import NotifierState
from services.notifier.webhooks.delivery import consumer_name
from tests.support.events import create_endpoint, create_job, job_event, publish, read_endpoint
from tests.support.http import bound_socket, serve
from tests.support.nats import ApiAudit
from tests.support.notifier import Notifier, notifier_settings


async def _deliver_through(js: JetStreamContext, subjects: Subjects, rx: Receiver, job_id: str, path: str) -> None:
    """Three more events delivered end to end at ``path``: the window the assertions cover."""
    for _ in range(3):
        event = job_event("acme", job_id, EventType.JOB_LOG)
        await publish(js, subjects, event)
        await wait_for(functools.partial(_received, rx, path, event.id), what="a delivery at the remaining endpoint")


def _received(rx: Receiver, path: str, event_id: str) -> bool:
    return event_id in rx.ids(path)


def _state(app: FastAPI) -> NotifierState:
    state: NotifierState = app.state.notifier
    return state


async def test_a_deleted_endpoints_delivery_stops_and_its_consumer_is_not_recreated(
    notifier: Notifier,
    receiver: tuple[Receiver, str],
    nc: NatsClient,
    js: JetStreamContext,
    subjects: Subjects,
    namespace: Namespace,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    doomed = await create_endpoint(webhooks_kv, "acme", f"{base}/doomed")
    await create_endpoint(webhooks_kv, "acme", f"{base}/kept")
    job_id = await create_job(jobs_kv, "acme")
    await publish(js, subjects, job_event("acme", job_id, EventType.JOB_LOG))
    await wait_for(lambda: rx.on("/doomed") and rx.on("/kept"), what="a delivery at both endpoints")
    name, stream = consumer_name("acme", doomed.id), namespace.stream(WEBHOOK_DELIVERIES)

    await webhooks_kv.delete(tenant_key("acme", doomed.id))

    async def consumer_gone() -> bool:
        try:
            await js.consumer_info(stream, name)
        except NotFoundError:
            return True
        return False

    await wait_for(consumer_gone, what="the deleted endpoint's consumer dropped")
    audit = await ApiAudit.start(nc)
    await _deliver_through(js, subjects, rx, job_id, "/kept")
    await nc.flush()
    assert audit.creations(name) == []  # never recreated after the delete
    # nor looked at again (the advisory of the delete itself may arrive late): no delivery loops
    assert [s for s in audit.naming(name) if ".DELETE." not in s] == []
    running = _state(notifier.app).delivery.running  # its delivery ends (its lease handed back first)
    await wait_for(lambda: ("acme", doomed.id) not in running, what="the deleted endpoint's delivery ended")
    assert audit.creations(name) == []
    assert await consumer_gone()


async def test_a_disabled_endpoint_gets_no_delivery_after_a_restart(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    declared: Declarations,
    receiver: tuple[Receiver, str],
    nc: NatsClient,
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    settings = notifier_settings(nats_server.url, namespace, tmp_path / "data")
    paused = await create_endpoint(webhooks_kv, "acme", f"{base}/paused")
    await create_endpoint(webhooks_kv, "acme", f"{base}/live")
    job_id = await create_job(jobs_kv, "acme")
    with serve(create_app(settings), bound_socket()):
        await publish(js, subjects, job_event("acme", job_id, EventType.JOB_LOG))
        await wait_for(lambda: rx.on("/paused") and rx.on("/live"), what="a delivery at both endpoints")
        record = await read_endpoint(webhooks_kv, "acme", paused.id)
        disabled = record.model_copy(update={"enabled": False, "disabled_reason": "paused by the test"})
        await webhooks_kv.put(tenant_key("acme", paused.id), disabled.model_dump_json().encode())
    name = consumer_name("acme", paused.id)
    await js.consumer_info(namespace.stream(WEBHOOK_DELIVERIES), name)  # its queue and consumer wait
    audit = await ApiAudit.start(nc)

    app = create_app(settings)
    with serve(app, bound_socket()):  # resumes every queue that has a consumer, the disabled one too
        await _deliver_through(js, subjects, rx, job_id, "/live")
        await nc.flush()
        assert ("acme", paused.id) not in _state(app).delivery.running
    assert audit.creations(name) == []
    assert len(audit.naming(name)) <= 1
    assert len(rx.on("/paused")) == 1  # nothing more while disabled
