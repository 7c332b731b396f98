"""A browser's ``?token=`` never leaves in a span: FastAPI's request span records ``url.query``, and the
processor every installed provider gets masks the token (other parameters stay)."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.gateway import Gateway, Tenant


async def test_the_token_in_a_query_is_masked_in_the_request_span(
    span_exporter: InMemorySpanExporter, gateway: Gateway, acme: Tenant
) -> None:
    token = (await acme.http.post("/v1/tokens", json={"scopes": ["jobs:read"]})).json()["token"]
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        assert (await http.get(f"/v1/jobs?limit=5&token={token}")).status_code == 200
    queries = [
        str(s.attributes.get("url.query"))
        for s in span_exporter.get_finished_spans()
        if s.attributes and "url.query" in s.attributes
    ]
    assert any("limit=5" in q for q in queries), queries
    assert all(token not in q for q in queries), queries
    assert any("token=*" in q for q in queries), queries
