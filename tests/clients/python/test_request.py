"""``client.request``: the escape hatch to a route the client has no verb for (the tenant's CORS origins,
a webhook's dead letters), against the embedded stack over real HTTP. The answer is the route's JSON and
an error answer is the same typed ``APIError`` (problem document, field errors) the verbs raise."""

from __future__ import annotations

import pytest
from gpurelay_client import AsyncClient, Client, GpurelayError, NotFound, UnprocessableEntity

from tests.clients.python.stack import ThreadedStack

pytestmark = pytest.mark.timeout(120)


def test_request_answers_the_routes_json_and_raises_typed_problems(stack: ThreadedStack) -> None:
    with Client(stack.url, api_key=stack.new_key("raw-sync")) as client:
        put = client.request("PUT", "/v1/cors", json={"origins": ["https://app.example.com"]})
        got = client.request("GET", "/v1/cors")
        cleared = client.request("PUT", "/v1/cors", json={"origins": []})
        with pytest.raises(UnprocessableEntity) as invalid:
            client.request("PUT", "/v1/cors", json={"origins": "https://app.example.com"})
        with pytest.raises(NotFound) as missing:
            client.request("GET", "/v1/webhooks/whe_none/dead-letters", params={"after": 0, "limit": 5})
        with pytest.raises(GpurelayError, match="a path under the base URL"):
            client.request("GET", "https://elsewhere.example/v1/cors")
    assert put == got == {"origins": ["https://app.example.com"]}
    assert cleared == {"origins": []}
    assert invalid.value.status == 422
    assert [e.loc[-1] for e in invalid.value.errors] == ["origins"]
    assert missing.value.status == 404
    assert missing.value.title
    assert "whe_none" in missing.value.detail


async def test_the_async_request_is_the_same_escape_hatch(stack: ThreadedStack) -> None:
    async with AsyncClient(stack.url, api_key=stack.new_key("raw-async")) as client:
        put = await client.request("PUT", "/v1/cors", json={"origins": ["http://localhost:5173"]})
        got = await client.request("get", "/v1/cors")  # the method in any case
        with pytest.raises(NotFound) as missing:
            await client.request("POST", "/v1/sessions/ses_none/replay", json={"params": {}})
    assert put == got == {"origins": ["http://localhost:5173"]}
    assert missing.value.status == 404
