"""Subjects (an app's end users) through the stack: what a subject's token creates records its subject; it
sees only its own (another subject's job, upload or session is a 404, as another tenant's); an API key
sees every one and filters with ?subject=."""

from __future__ import annotations

from pathlib import Path

import httpx

from contracts.api.tokens import Scope
from tests.support.app_api import AppStack, lap_spec, small_video, status_of, upload_file
from tests.support.sessions import open_socket, until_closed

ALL = [scope.value for scope in Scope]


async def _job(client: httpx.AsyncClient, video: bytes) -> dict[str, object]:
    upload = await upload_file(client, video)
    created = await client.post("/v1/jobs", json=lap_spec(upload, delay_s=3600))
    assert created.status_code == 201, created.text
    job: dict[str, object] = created.json()
    return job


async def test_a_subject_sees_only_its_own(stack: AppStack, tmp_path: Path) -> None:
    video = small_video(tmp_path)
    alice, bob = (
        stack.client(await stack.mint(ALL, subject="alice")),
        stack.client(await stack.mint(ALL, subject="bob")),
    )
    _, globex_key = await stack.new_key("globex")
    globex = stack.client(await _minted(stack, globex_key))
    async with alice, bob, globex:
        job = await _job(alice, video)
        job_id, upload_id = str(job["id"]), str(job["spec"]["inputs"]["video"]["upload_id"])  # type: ignore[index]
        assert job["subject"] == "alice"
        assert (await alice.get(f"/v1/uploads/{upload_id}")).json()["subject"] == "alice"
        session = (await alice.post("/v1/sessions", json={"kind": "vlm"})).json()
        assert session["subject"] == "alice"
        for other in (bob, globex):
            for method, url in [
                ("GET", f"/v1/jobs/{job_id}"),
                ("POST", f"/v1/jobs/{job_id}/cancel"),
                ("GET", f"/v1/uploads/{upload_id}"),
                ("GET", f"/v1/sessions/{session['id']}"),
                ("POST", f"/v1/sessions/{session['id']}/stop"),
                ("GET", f"/v1/jobs/{job_id}/events"),
                ("GET", f"/v1/sessions/{session['id']}/events"),
            ]:
                assert (await status_of(other, method, url)).status_code == 404, (method, url)
            bulk = (await other.post("/v1/jobs:cancel", json={"ids": [job_id]})).json()["results"]
            assert bulk == [{"id": job_id, "outcome": "not_found", "status": None}]
            assert job_id not in [j["id"] for j in (await other.get("/v1/jobs")).json()["items"]]
            assert session["id"] not in [s["id"] for s in (await other.get("/v1/sessions")).json()["items"]]
        stolen = await bob.post("/v1/jobs", json=lap_spec(upload_id))
        assert stolen.status_code == 422  # alice's upload is not bob's input
        bob_job = await _job(bob, video)
        assert [j["id"] for j in (await alice.get("/v1/jobs")).json()["items"]] == [session["id"], job_id]
        assert [j["id"] for j in (await alice.get("/v1/jobs?subject=bob")).json()["items"]] == []
        ws = stack.url.replace("http", "ws", 1) + f"/v1/sessions/{session['id']}/stream"
        async with open_socket(ws, str(bob.headers["authorization"]).split()[1]) as socket:
            assert (await until_closed(socket))[1] == 4404
        async with alice.stream("GET", f"/v1/jobs/{job_id}/events") as own:
            assert own.status_code == 200
        stream_url = (await alice.get(f"/v1/jobs/{job_id}")).json()["urls"]["events"]
        async with stack.client(None) as anonymous, anonymous.stream("GET", stream_url) as followed:
            assert followed.status_code == 200  # the job's stream token, minted for alice
    everyone = [j["id"] for j in (await stack.api.get("/v1/jobs")).json()["items"]]
    assert {job_id, bob_job["id"]} <= set(everyone)
    assert [j["id"] for j in (await stack.api.get("/v1/jobs?subject=bob")).json()["items"]] == [bob_job["id"]]
    assert (await stack.api.get(f"/v1/jobs/{job_id}")).json()["subject"] == "alice"
    sessions = (await stack.api.get("/v1/sessions?subject=alice")).json()["items"]
    assert [s["id"] for s in sessions] == [session["id"]]


async def _minted(stack: AppStack, key: str) -> str:
    async with stack.client(key) as owner:
        response = await owner.post("/v1/tokens", json={"scopes": ALL, "subject": "alice"})
    token: str = response.json()["token"]
    return token
