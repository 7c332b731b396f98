"""The notifier's ``/metrics`` (over real HTTP, no key): it parses, shows its own families, and samples
its fan-out's lag and the webhook queues' depth on each scrape."""

from __future__ import annotations

import httpx

from contracts.subjects import Namespace
from services.notifier.webhooks.fanout import FANOUT_DURABLE
from tests.support.metrics import scrape

NOTIFIER_FAMILIES = {
    "gpurelay_http_request_duration_seconds", "gpurelay_sse_connections", "gpurelay_webhook_attempts",
    "gpurelay_webhook_deliveries", "gpurelay_webhook_delivery_latency_seconds", "gpurelay_webhook_queue_messages",
    "gpurelay_events_consumed", "gpurelay_consumer_pending_messages",
}  # fmt: skip


async def test_the_notifiers_metrics_parse_and_sample_its_fanout(http: httpx.AsyncClient, namespace: Namespace) -> None:
    first = await scrape(http)
    assert first.families >= NOTIFIER_FAMILIES
    assert first.labels("gpurelay_consumer_pending_messages") == [
        {"stream": namespace.stream("JOBS"), "consumer": FANOUT_DURABLE}
    ]
    assert first.value("gpurelay_webhook_queue_messages") == 0
    second = await scrape(http)
    assert (
        second.value("gpurelay_http_request_duration_seconds_count", method="GET", route="/metrics", status="200") >= 1
    )
