"""Scoped tokens through the whole stack: each scope opens exactly its routes (a table of route × scope),
a 403 outside names the scope it lacks, key-only routes refuse every token, and the sockets follow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contracts.api.tokens import Scope
from tests.support.app_api import AppStack, jpeg, lap_spec, status_of, upload_file
from tests.support.lap import lap_positions, lap_speeds, scrolling_video
from tests.support.sessions import open_socket, until_closed

U, J, S, R = "{upload}", "{job}", "{session}", "{robot}"
UW, JW, JR, SW, ER, RW, RR = (s.value for s in Scope)
KEY_ONLY: tuple[str, ...] = ()
Row = tuple[str, str, dict[str, Any], tuple[str, ...]]
TABLE: list[Row] = [
    ("POST", "/v1/uploads", {"json": {"filename": "a.mp4", "content_type": "video/mp4", "size": 10}}, (UW,)),
    ("GET", f"/v1/uploads/{U}", {}, (UW,)),
    ("POST", f"/v1/uploads/{U}/complete", {}, (UW,)),
    ("POST", "/v1/jobs", {"json": lap_spec(U, delay_s=3600)}, (JW,)),
    ("POST", "/v1/jobs:batch", {"json": {"jobs": [{"spec": lap_spec(U, delay_s=3600)}]}}, (JW,)),
    ("GET", "/v1/jobs", {}, (JR,)),
    ("GET", f"/v1/jobs/{J}", {}, (JR,)),
    ("GET", "/v1/sessions", {}, (JR,)),
    ("GET", "/v1/usage", {}, (JR,)),
    ("POST", "/v1/sessions", {"json": {"kind": "splat"}}, (SW,)),
    ("GET", f"/v1/sessions/{S}", {}, (JR, SW)),
    ("GET", f"/v1/sessions/{S}/ply", {}, (JR, SW)),
    ("POST", f"/v1/sessions/{S}/frames", {"content": jpeg(), "headers": {"content-type": "image/jpeg"}}, (SW,)),
    ("POST", f"/v1/sessions/{S}/reset", {}, (SW,)),
    ("GET", f"/v1/sessions/{S}/recording", {}, (JR, SW)),
    ("POST", f"/v1/sessions/{S}/replay", {"json": {}}, (SW,)),
    ("GET", f"/v1/jobs/{J}/events", {}, (ER,)),
    ("GET", f"/v1/sessions/{S}/events", {}, (ER,)),
    ("GET", "/v1/events", {}, (ER,)),
    ("POST", f"/v1/robots/{R}/joints", {"json": {"joint_angles": [0.1] * 6}}, (RW,)),
    ("GET", "/v1/robots", {}, (RR,)),
    ("GET", f"/v1/robots/{R}/joints", {}, (RR,)),
    ("GET", f"/v1/robots/{R}/joints/latest", {}, (RR,)),
    ("POST", f"/v1/jobs/{J}/cancel", {}, (JW,)),
    ("POST", "/v1/jobs:cancel", {"json": {"ids": [J]}}, (JW,)),
    ("POST", f"/v1/sessions/{S}/stop", {}, (SW,)),
    ("GET", "/v1/webhooks", {}, KEY_ONLY),
    ("GET", "/v1/webhooks/whe_none/dead-letters", {}, KEY_ONLY),
    ("GET", "/v1/webhooks/whe_none/deliveries", {}, KEY_ONLY),
    ("GET", "/v1/cors", {}, KEY_ONLY),
    ("PUT", "/v1/cors", {"json": {"origins": []}}, KEY_ONLY),
    ("POST", "/v1/tokens", {"json": {"scopes": [JR]}}, KEY_ONLY),
]
"""Each route, what it is sent, and the scopes that open it (none: an API key only)."""


def _fill(value: Any, ids: dict[str, str]) -> Any:
    text = json.dumps(value) if not isinstance(value, bytes) else None
    if text is None:
        return value
    for name, resource in ids.items():
        text = text.replace(name, resource)
    return json.loads(text)


async def _resources(stack: AppStack, tmp_path: Path) -> dict[str, str]:
    video = scrolling_video(tmp_path / "lap.mp4", lap_positions(lap_speeds(12)))
    upload = await upload_file(stack.api, video.read_bytes())
    job = await stack.api.post("/v1/jobs", json=lap_spec(upload, delay_s=3600))
    session = await stack.api.post("/v1/sessions", json={"kind": "splat"})
    joints = await stack.api.post("/v1/robots/arm-1/joints", json={"joint_angles": [0.0] * 6})
    assert (job.status_code, session.status_code, joints.status_code) == (201, 201, 202)
    return {U: upload, J: job.json()["id"], S: session.json()["id"], R: "arm-1"}


async def test_each_scope_opens_exactly_its_routes(stack: AppStack, tmp_path: Path) -> None:
    ids = await _resources(stack, tmp_path)
    tokens = {scope.value: await stack.mint([scope.value]) for scope in Scope}
    opened: dict[str, list[str]] = {}
    for method, path, options, scopes in TABLE:
        url = _fill(path, ids)
        sent = {k: (_fill(v, ids) if k == "json" else v) for k, v in options.items()}
        for scope, token in tokens.items():
            async with stack.client(token) as client:
                response = await status_of(client, method, url, **sent)
            where = f"{method} {path} with {scope}: {response.status_code}"
            if scope in scopes:
                assert response.status_code not in (401, 403), where
                assert response.status_code < 500, where
                opened.setdefault(f"{method} {path}", []).append(scope)
            else:
                assert response.status_code == 403, where
                assert response.headers["content-type"] == "application/problem+json", where
                if scopes:
                    assert response.json()["missing_scope"] == list(scopes), where
        async with stack.client(stack.key) as client:  # the API key opens every route
            assert (await status_of(client, method, url, **sent)).status_code not in (401, 403), f"{method} {path}"
    assert opened == {f"{m} {p}": list(s) for m, p, _, s in TABLE if s}


async def test_the_kinds_list_takes_any_credential_and_follows_kinds(stack: AppStack) -> None:
    async with stack.client(await stack.mint([ER])) as client:
        listed = (await client.get("/v1/kinds")).json()["items"]
    assert [k["kind"] for k in listed] == ["lap_compare", "splat", "vlm"]
    narrowed = await stack.mint([JW], kinds=["splat"])
    async with stack.client(narrowed) as client:
        assert [k["kind"] for k in (await client.get("/v1/kinds")).json()["items"]] == ["splat"]
    async with stack.client(None) as anonymous:
        assert (await anonymous.get("/v1/kinds")).status_code == 401


@pytest.mark.parametrize("via", ["query", "first_message"])
async def test_the_sockets_check_the_scope(stack: AppStack, via: str) -> None:
    session = (await stack.api.post("/v1/sessions", json={"kind": "splat"})).json()
    ws_base = stack.url.replace("http", "ws", 1)

    async def close_code(path: str, token: str) -> int | None:
        url = f"{ws_base}{path}" + (f"?token={token}" if via == "query" else "")
        async with open_socket(url) as ws:
            if via == "first_message":
                await ws.send(json.dumps({"auth": token}))
            _, code = await until_closed(ws)
            return code

    reader = await stack.mint([JR])
    assert await close_code(f"/v1/sessions/{session['id']}/stream", reader) == 4403
    assert await close_code("/v1/robots/arm-9/joints/ws", reader) == 4403
    other_robot = await stack.mint([RW], robot_id="arm-1")
    assert await close_code("/v1/robots/arm-9/joints/ws", other_robot) == 4403
    assert await close_code(f"/v1/sessions/{session['id']}/stream", "not.a.token") == 4401
