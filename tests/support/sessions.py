"""Helpers of the live-session tests: frames made with OpenCV, socket URLs, the FRAMES stream read back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import cv2
import httpx
import numpy as np
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from contracts.events.registry import EventType, job_event_name, make_event
from contracts.streams import FRAMES
from contracts.subjects import Namespace, Subjects


def jpeg(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small JPEG frame whose content depends on ``seed``."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def png(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small PNG frame."""
    rng = np.random.default_rng(seed)
    ok, encoded = cv2.imencode(".png", rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    assert ok
    return encoded.tobytes()


async def post_frame(
    http: httpx.AsyncClient, api_key: str, session_id: str, frame: bytes, key: str | None = None, query: str = ""
) -> httpx.Response:
    """``POST /v1/sessions/{session_id}/frames{query}`` of a raw JPEG, with ``key`` as its Idempotency-Key."""
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "image/jpeg"}
    headers |= {"Idempotency-Key": key} if key is not None else {}
    return await http.post(f"/v1/sessions/{session_id}/frames{query}", content=frame, headers=headers)


async def keyed_frames_answered_after_stop(gateway_url: str, api: httpx.AsyncClient, api_key: str) -> None:
    """Two keyed frames, the session stopped, then each sent again (their first answers lost): each answers
    the seq it was stored as (on a plain JPEG POST and on the documented route), the key with other bytes
    is a 422, and a frame never stored (a new key, or none) is a 409: the session takes no more."""
    documented = "?ts=1700000000.5"  # a query: the request goes to the FastAPI route, not PlainFrameRoute
    sid = (await api.post("/v1/sessions", json={"kind": "splat"})).json()["id"]
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
        for n in (1, 2):
            sent = await post_frame(http, api_key, sid, jpeg(n), f"cam-{n}")
            assert (sent.status_code, sent.json()["seq"]) == (202, n), sent.text
        stopped = await api.post(f"/v1/sessions/{sid}/stop")
        assert stopped.status_code == 202, stopped.text
        for query in ("", documented):
            for n in (1, 2):  # the answer of a try that was lost: the frame is stored, its seq kept
                again = await post_frame(http, api_key, sid, jpeg(n), f"cam-{n}", query)
                assert again.status_code == 202, again.text
                assert again.json()["seq"] == n
            reused = await post_frame(http, api_key, sid, jpeg(3), "cam-1", query)
            assert reused.status_code == 422, reused.text
            for key in ("cam-3", None):  # a frame never stored: the session takes no more
                late = await post_frame(http, api_key, sid, jpeg(3), key, query)
                assert late.status_code == 409, late.text
                assert late.headers["content-type"] == "application/problem+json"
    received = (await api.get(f"/v1/sessions/{sid}")).json()["frames_received"]
    assert received == 2


def ws_url(http_url: str) -> str:
    """``http://…`` → ``ws://…``."""
    return "ws" + http_url.removeprefix("http")


def open_socket(url: str, key: str | None = None, **options: Any) -> connect:
    """A WebSocket connection (no proxy, no compression), with a Bearer header when ``key`` is given."""
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return connect(url, additional_headers=headers, proxy=None, compression=None, **options)


async def next_json(ws: ClientConnection, timeout_s: float = 15.0, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The next JSON message of ``ws`` whose ``type`` is not in ``skip`` (bounded wait)."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") not in skip:
                return dict(message)


async def until_closed(ws: ClientConnection, timeout_s: float = 15.0) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes, and the close code."""
    messages: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout_s):
            async for raw in ws:
                messages.append(json.loads(raw))
    except ConnectionClosed:
        pass
    return messages, ws.close_code


async def frames_stored(js: JetStreamContext, ns: Namespace, tenant: str, session_id: str, count: int) -> list[Any]:
    """The session's first ``count`` messages in FRAMES (frames and control), in order; fails if fewer come."""
    subject = ns.subject(f"sessions.{tenant}.{session_id}.*")
    sub = await js.subscribe(subject, stream=ns.stream(FRAMES), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        return [await sub.next_msg(timeout=10) for _ in range(count)]
    finally:
        await sub.unsubscribe()


async def frames_count(js: JetStreamContext, ns: Namespace, tenant: str, session_id: str) -> int:
    """How many messages the session has in FRAMES."""
    info = await js.stream_info(ns.stream(FRAMES), subjects_filter=ns.subject(f"sessions.{tenant}.{session_id}.*"))
    return sum((info.state.subjects or {}).values())


async def publish_event(
    js: JetStreamContext, subjects: Subjects, tenant: str, job_id: str, type_: EventType, payload: BaseModel
) -> int:
    """Publish a job (or session) event as the platform does; its stream sequence."""
    event = make_event(type_, payload, tenant=tenant, source="test", job_id=job_id, kind="splat", attempt=1)
    subject = subjects.job_event(tenant, job_id, job_event_name(type_))
    ack = await js.publish(subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.id})
    return int(ack.seq)
