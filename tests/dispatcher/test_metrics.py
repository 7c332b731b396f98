"""The dispatcher's ``/metrics`` (beside ``/healthz``, over real HTTP): it parses, shows its own
families, samples its consumers' lag and its pool on each scrape, and moves as jobs run."""

from __future__ import annotations

import httpx
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.subjects import Subjects
from services.dispatcher.__main__ import health_app
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, submit
from tests.support.http import bound_socket, serve
from tests.support.metrics import moved, scrape

DISPATCHER_FAMILIES = {
    "gpurelay_events_published", "gpurelay_events_consumed", "gpurelay_consumer_pending_messages",
    "gpurelay_consumer_ack_pending_messages", "gpurelay_jobs_finished", "gpurelay_job_queue_wait_seconds",
    "gpurelay_job_run_seconds", "gpurelay_job_gpu_seconds", "gpurelay_job_cost_usd", "gpurelay_local_pool_processes",
}  # fmt: skip


async def test_the_dispatchers_metrics_parse_sample_its_consumers_and_pool_and_count_a_job(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, event_log: EventLog
) -> None:
    route = local_route("quick", price_per_gpu_hour=36.0)
    dispatcher = await start_dispatcher({"pose": route}, fold_partitions=0)  # the serial fold's consumer on JOBS
    sock = bound_socket()
    with serve(health_app(dispatcher), sock):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=10) as http:
            before = await scrape(http)
            job_id = await submit(js, jobs_kv, subjects, POSE)
            await event_log.wait(lambda: "job.succeeded" in event_log.types(job_id))
            after = await scrape(http)

    assert before.families >= DISPATCHER_FAMILIES
    stream = subjects.ns.stream("JOBS")
    durables = {
        (labels["stream"], labels["consumer"]) for labels in before.labels("gpurelay_consumer_pending_messages")
    }
    assert {(stream, "dispatcher-jobs"), (stream, "dispatcher-uploads")} <= durables
    assert before.value("gpurelay_local_pool_processes", state="size") == dispatcher.settings.local_pool_size
    assert moved(before, after, "gpurelay_events_consumed_total", consumer="dispatcher-jobs", type="job.created") == 1
    assert moved(before, after, "gpurelay_events_consumed_total", consumer="dispatch-pose", type="dispatch.ticket") == 1
    assert moved(before, after, "gpurelay_events_published_total", type="job.queued") == 1
    assert moved(before, after, "gpurelay_job_queue_wait_seconds_count", kind="pose") == 1
