"""The gateway and the dispatcher give one logical event the same id, so the log stores it once."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.event_ids import created_event_id
from contracts.subjects import Namespace, Subjects
from services.dispatcher.store import JobEvents
from tests.support.dispatcher import read_record
from tests.support.gateway import Tenant, presign


async def test_the_sweepers_job_created_is_the_gateways_and_is_dropped(
    acme: Tenant, js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, subjects: Subjects
) -> None:
    upload_id = (await presign(acme, 10))["id"]  # pending: the job waits on it, nothing else publishes
    response = await acme.http.post("/v1/jobs", json={"kind": "pose", "inputs": {"video": {"upload_id": upload_id}}})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    record = await read_record(jobs_kv, job_id)
    assert not await JobEvents(js, namespace).publish_created(record)  # a duplicate of the gateway's
    info = await js.stream_info(namespace.stream(streams.JOBS), subjects_filter=subjects.job_events("acme", job_id))
    assert info.state.subjects == {subjects.job_event("acme", job_id, "created"): 1}
    msg = await js.get_last_msg(namespace.stream(streams.JOBS), subjects.job_event("acme", job_id, "created"))
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == created_event_id(job_id)
