"""Live sessions through the whole embedded stack with the echo workload, on both worker paths.

Frames over the session socket are acked and reach the worker in order with their joint samples;
its results, snapshots and the terminal event come back on the same socket and on SSE; the live
snapshot downloads with an ETag; reset clears, stop succeeds with the result, idle stops by itself,
cancel kills the worker, and a killed worker fails the session with ``worker_lost``.

Every test runs twice (``session_path``): on the local pool (the worker reads FRAMES and TELEMETRY
from NATS) and on the gateway-feed path, where the route is a Modal class and the dispatcher's real
Modal backend spawns through :class:`~tests.support.modal_processes.ProcessModal`: a child process
running :func:`modal_workers.app.run_request` with no NATS URL, which posts its events to the ingest
route and reads its input from ``WS /v1/internal/sessions/{id}/feed``. Only Modal's control plane is
faked (spawn; get: the process's outcome, or an error when it died; cancel: kill).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import SessionStack, events, settled
from tests.support.modal_processes import ProcessModal
from tests.support.sessions import jpeg, next_json, open_socket

pytestmark = pytest.mark.timeout(120)


async def start(api: httpx.AsyncClient, kind: str = "splat", **body: Any) -> dict[str, Any]:
    created = await api.post("/v1/sessions", json={"kind": kind, **body})
    assert created.status_code == 201, created.text
    session: dict[str, Any] = created.json()
    return session


async def read_until(ws: Any, seen: list[dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Read the socket until a message satisfies ``done`` (bounded); every event on the way goes to ``seen``."""
    async with asyncio.timeout(30):
        while True:
            message = await next_json(ws, 30, skip=("control",))
            if message["type"] == "event":
                seen.append(message["event"])
            if done(message):
                return message


async def until_event(ws: Any, wanted: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    """The first event of type ``wanted`` in ``seen`` or, else, from the socket."""
    for event in seen:
        if event["type"] == wanted:
            return event
    message = await read_until(ws, seen, lambda m: m["type"] == "event" and m["event"]["type"] == wanted)
    return dict(message["event"])


def of_type(seen: list[dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    return [e["data"] for e in seen if e["type"] == wanted]


async def test_frames_joints_results_snapshots_reset_and_stop(
    session_stack: SessionStack, session_path: str, process_modal: ProcessModal
) -> None:
    env, api = session_stack
    session = await start(api, robot_id="arm-e2e", params={"joint_tolerance_ms": 500})
    sid = session["id"]
    t0 = time.time()
    seen: list[dict[str, Any]] = []
    async with open_socket(session["urls"]["stream"], env["GPURELAY_API_KEY"]) as ws:
        await until_event(ws, "job.started", seen)
        for i in range(4):
            joints = {"joint_angles": [0.1 * (i + 1)] * 6, "ts": t0 + i}
            assert (await api.post("/v1/robots/arm-e2e/joints", json=joints)).status_code == 202
            await ws.send(json.dumps({"type": "frame", "ts": t0 + i + 0.02}))
            await ws.send(jpeg(i))
            ack = await read_until(ws, seen, lambda m: m["type"] in ("ack", "error"))
            assert (ack["type"], ack["seq"]) == ("ack", i + 1)
        await read_until(ws, seen, lambda _: len(of_type(seen, "session.result")) == 4)
        results = of_type(seen, "session.result")
        assert [r["chunk"] for r in results] == [1, 2, 3, 4]
        assert [r["first_seq"] for r in results] == [1, 2, 3, 4]
        assert [r["data"]["joints"] for r in results] == [[0.1 * (i + 1)] * 6 for i in range(4)]

        ply = await api.get(f"/v1/sessions/{sid}/ply")
        assert ply.status_code == 200
        assert json.loads(ply.content)["seqs"][-1] >= 2
        again = await api.get(f"/v1/sessions/{sid}/ply", headers={"If-None-Match": ply.headers["etag"]})
        assert again.status_code in (200, 304)  # 200 only if a newer snapshot came between
        await read_until(ws, seen, lambda _: len(of_type(seen, "session.snapshot")) == 2)
        assert [snap["seq"] for snap in of_type(seen, "session.snapshot")] == [2, 4]

        await ws.send(json.dumps({"type": "reset"}))
        await ws.send(jpeg(9))
        await ws.send(json.dumps({"type": "stop"}))
        done = await until_event(ws, "job.succeeded", seen)
    assert done["data"]["result"]["seqs"] == [5]
    assert done["data"]["result"]["resets"] == 1
    assert done["data"]["result"]["stopped"] == "requested"
    record = await settled(env, sid)
    assert record.status == "succeeded"
    assert_ran_on(session_path, record.backend, env, process_modal)
    shown = (await api.get(f"/v1/sessions/{sid}")).json()
    assert (shown["state"], shown["frames_received"], shown["frames_processed"]) == ("succeeded", 5, 5)
    sse = [e.type for e in await events(env, sid)]
    assert "session.snapshot" in sse
    assert sse[-1] == "job.succeeded"


async def test_an_idle_session_stops_by_itself(session_stack: SessionStack) -> None:
    env, api = session_stack
    session = await start(api, "vlm", params={"idle_timeout_s": 1.0})
    frame = await api.post(session["urls"]["frames"], content=jpeg(1), headers={"Content-Type": "image/jpeg"})
    assert frame.status_code == 202
    record = await settled(env, session["id"], timeout_s=45)
    assert record.status == "succeeded"
    assert record.result is not None
    assert record.result["stopped"] == "idle"
    assert record.result["seqs"] == [1]


def assert_ran_on(session_path: str, backend: str | None, env: dict[str, str], modal: ProcessModal) -> None:
    """The session ran where ``session_path`` says; a Modal-like worker without any NATS URL."""
    if session_path == "local-pool":
        assert (backend, modal.calls) == ("local", {})
        return
    (call,) = modal.calls.values()
    assert backend == "modal"
    assert not [value for value in call.env.values() if env["GPURELAY_NATS_URL"] in value]


def worker_pid(marks: Path, session_id: str) -> int:
    """The pid the echo workload's process wrote for ``session_id``."""
    (mark,) = list(marks.glob(f"{session_id}.*"))
    return int(mark.read_text())


async def test_cancel_kills_the_session_and_its_socket_says_so(session_stack: SessionStack, tmp_path: Path) -> None:
    env, api = session_stack
    session = await start(api)
    seen: list[dict[str, Any]] = []
    async with open_socket(session["urls"]["stream"], env["GPURELAY_API_KEY"]) as ws:
        await until_event(ws, "job.progress", seen)  # the workload runs (and left its pid)
        assert (await api.post(session["urls"]["cancel"])).status_code == 202
        await until_event(ws, "job.canceled", seen)
    pid = worker_pid(tmp_path, session["id"])
    async with asyncio.timeout(15):
        while _alive(pid):  # noqa: ASYNC110 - a process we do not own: no event to wait on
            await asyncio.sleep(0.05)


async def test_a_killed_worker_fails_the_session_with_worker_lost(session_stack: SessionStack, tmp_path: Path) -> None:
    env, api = session_stack
    session = await start(api)
    seen: list[dict[str, Any]] = []
    async with open_socket(session["urls"]["stream"], env["GPURELAY_API_KEY"]) as ws:
        await until_event(ws, "job.progress", seen)  # the workload runs (and left its pid)
        os.kill(worker_pid(tmp_path, session["id"]), signal.SIGKILL)
        failed = await until_event(ws, "job.failed", seen)
    assert failed["data"]["error"]["code"] == "worker_lost"
    sse = await events(env, session["id"])
    assert sse[-1].type == "job.failed"
    assert sse[-1].envelope.data["error"]["code"] == "worker_lost"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
