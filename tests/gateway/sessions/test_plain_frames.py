"""A raw frame without a query (what a camera loop sends) is served by :class:`PlainFrameRoute`, ahead of
FastAPI's routing and dependency solving; it answers exactly as the documented route (which still takes
``?ts=``, multipart and every other request to the path): same statuses, problems and headers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from services.gateway.sessions.routes import PlainFrameRoute
from tests.support.gateway import Gateway, Tenant
from tests.support.sessions import jpeg, post_frame

DOCUMENTED = "?ts=1700000000.5"  # a query: the request goes to the FastAPI route


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    return {"session_frame_max_bytes": 64 * 1024, "session_max_frames_per_s": 1000.0}


def answer(response: httpx.Response) -> tuple[int, str, Any, str | None]:
    body = response.json()
    if response.status_code == 202:
        body = sorted(body)  # the seq moves on between the two
    return response.status_code, response.headers["content-type"], body, response.headers.get("www-authenticate")


async def test_the_plain_route_answers_as_the_documented_one(gateway: Gateway, acme: Tenant, globex: Tenant) -> None:
    sid = (await acme.http.post("/v1/sessions", json={"kind": "splat"})).json()["id"]
    minted = await acme.http.post("/v1/tokens", json={"scopes": ["jobs:read"]})
    assert minted.status_code == 201, minted.text
    reader = minted.json()["token"]
    frame, pose = jpeg(1), json.dumps([float(i == j) for i in range(4) for j in range(4)])
    cases: list[tuple[int, dict[str, str], bytes, str]] = [
        (202, {}, frame, sid),
        (202, {"Gpurelay-Pose": pose}, frame, sid),
        (422, {"Gpurelay-Pose": "[1, 2]"}, frame, sid),
        (401, {"Authorization": ""}, frame, sid),
        (401, {"Authorization": "Bearer gr_nope"}, frame, sid),
        (401, {"Authorization": f"Basic {acme.key}"}, frame, sid),
        (403, {"Authorization": f"Bearer {reader}"}, frame, sid),  # no sessions:write
        (404, {"Authorization": f"Bearer {globex.key}"}, frame, sid),  # another tenant's
        (404, {}, frame, "job_nope"),
        (422, {}, b"hello, not a jpeg", sid),
        (413, {}, b"\xff\xd8\xff" + bytes(64 * 1024), sid),
    ]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        for status, headers, body, session in cases:
            sent = {"Authorization": f"Bearer {acme.key}", "Content-Type": "image/jpeg"} | headers
            sent = {k: v for k, v in sent.items() if v}
            plain = await http.post(f"/v1/sessions/{session}/frames", content=body, headers=sent)
            documented = await http.post(f"/v1/sessions/{session}/frames{DOCUMENTED}", content=body, headers=sent)
            assert answer(plain) == answer(documented), headers
            assert plain.status_code == status, (headers, plain.text)
    received = (await acme.http.get(f"/v1/sessions/{sid}")).json()["frames_received"]
    assert received == 4  # the two good frames, each both ways


def test_only_a_raw_image_without_a_query_takes_the_plain_route(gateway: Gateway) -> None:
    route = gateway.app.router.routes[0]
    assert isinstance(route, PlainFrameRoute)

    def scope(method: str = "POST", query: bytes = b"", content_type: bytes = b"image/jpeg") -> dict[str, Any]:
        headers = [(b"content-type", content_type)]
        path = "/v1/sessions/job_x/frames"
        return {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers}

    assert route.matches(scope())[0].name == "FULL"
    assert route.matches(scope(content_type=b"image/png; q=1"))[0].name == "FULL"
    for other in (scope("GET"), scope(query=b"ts=1"), scope(content_type=b"multipart/form-data; boundary=x")):
        assert route.matches(other)[0].name == "NONE"


async def test_a_frame_sent_again_with_its_idempotency_key_answers_the_seq_it_was_stored_as(
    gateway: Gateway, acme: Tenant
) -> None:
    sid = (await acme.http.post("/v1/sessions", json={"kind": "splat"})).json()["id"]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:

        async def post(frame: bytes, key: str | None = None, query: str = "") -> httpx.Response:
            return await post_frame(http, acme.key, sid, frame, key, query)

        async def seq(frame: bytes, key: str | None = None, query: str = "") -> int:
            response = await post(frame, key, query)
            assert response.status_code == 202, response.text
            return int(response.json()["seq"])

        assert await seq(jpeg(1), "cam-1") == 1
        assert await seq(jpeg(1), "cam-1") == 1  # the plain route
        assert await seq(jpeg(1), "cam-1", DOCUMENTED) == 1  # the documented one
        assert await seq(jpeg(2), "cam-2", DOCUMENTED) == 2
        assert await seq(jpeg(2), "cam-2") == 2
        assert await seq(jpeg(1)) == 3  # without a key each frame is a new one
        assert await seq(jpeg(1)) == 4
        for bad_key, frame in (("cam-1", jpeg(3)), ("k" * 256, jpeg(3)), ("", jpeg(3))):
            plain, documented = await post(frame, bad_key), await post(frame, bad_key, DOCUMENTED)
            assert plain.status_code == 422, plain.text
            assert plain.headers["content-type"] == "application/problem+json"
            assert answer(plain) == answer(documented)
            assert "Idempotency-Key" in plain.json()["detail"]
    received = (await acme.http.get(f"/v1/sessions/{sid}")).json()["frames_received"]
    assert received == 4
