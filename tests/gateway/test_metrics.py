"""The gateway's ``/metrics``: no API key, Prometheus text, requests by route template (never a raw
path: 100 distinct job ids make no new series), and nothing at all when disabled."""

from __future__ import annotations

import httpx
import pytest

from contracts.ids import new_id
from tests.support.gateway import Gateway, Tenant
from tests.support.metrics import moved, scrape

HTTP = "gpurelay_http_request_duration_seconds_count"


async def test_metrics_need_no_key_and_label_requests_by_route_template_with_bounded_cardinality(
    gateway: Gateway, acme: Tenant, anonymous: httpx.AsyncClient
) -> None:
    before = await scrape(anonymous)
    ids = [new_id("job") for _ in range(100)]
    for job_id in ids:
        assert (await acme.http.get(f"/v1/jobs/{job_id}")).status_code == 404
    for job_id in ids[:10]:
        assert (await anonymous.get(f"/no/such/{job_id}")).status_code == 404
    after = await scrape(anonymous)

    assert moved(before, after, HTTP, method="GET", route="/v1/jobs/{job_id}", status="404") == 100
    assert moved(before, after, HTTP, method="GET", route="unmatched", status="404") == 10
    assert not [value for value in after.label_values() if any(job_id in value for job_id in ids)]
    routes = {labels["route"] for labels in after.labels(HTTP)}
    assert all(route == "unmatched" or route.startswith("/") for route in routes)
    new = {tuple(labels.values()) for labels in after.labels(HTTP)} - {tuple(lb.values()) for lb in before.labels(HTTP)}
    assert new <= {("GET", "/v1/jobs/{job_id}", "404"), ("GET", "unmatched", "404"), ("GET", "/metrics", "200")}
    assert {"gpurelay_events_published", "gpurelay_jobs_created", "gpurelay_session_frames"} <= after.families


@pytest.mark.parametrize("gateway_overrides", [{"metrics_enabled": False}])
async def test_metrics_disabled_serve_nothing(gateway: Gateway, anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/metrics")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
