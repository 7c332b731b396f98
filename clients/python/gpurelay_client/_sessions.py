"""Session flows both clients run (``/v1/sessions``): start with an ``Idempotency-Key``, read, and
the HTTP forms of a frame (with an ``Idempotency-Key`` too), stop and reset (the socket's are in the
clients' ``Session``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from gpurelay_client._core import Flow, Request, call, segment
from gpurelay_client._models import FrameAccepted, SessionOut


def start_flow(
    kind: str,
    params: Mapping[str, Any] | None,
    robot_id: str | None,
    webhook: Mapping[str, Any] | str | None,
    idempotency_key: str | None,
    retries: int,
) -> Flow[SessionOut]:
    """``POST /v1/sessions``: a session of ``kind`` (``splat``, ``vlm``); retried safely under its key."""
    body: dict[str, Any] = {"kind": kind, "params": dict(params or {})}
    if robot_id is not None:
        body["robot_id"] = robot_id
    if webhook is not None:
        body["webhook"] = {"url": webhook} if isinstance(webhook, str) else dict(webhook)
    headers = {"Idempotency-Key": idempotency_key or f"gpurelay-py-{uuid.uuid4()}"}
    return call(Request("POST", "/v1/sessions", json=body, headers=headers), SessionOut, retries)


def get_flow(session_id: str, retries: int) -> Flow[SessionOut]:
    """``GET /v1/sessions/{id}``: state, frame counts, the worker's figures, snapshot, result."""
    return call(Request("GET", f"/v1/sessions/{segment(session_id)}"), SessionOut, retries)


def control_flow(session_id: str, action: str, retries: int) -> Flow[SessionOut]:
    """``POST /v1/sessions/{id}/stop`` or ``/reset`` (not retried: a reset twice clears twice)."""
    request = Request("POST", f"/v1/sessions/{segment(session_id)}/{action}", retryable=action == "stop")
    return call(request, SessionOut, retries)


def frame_flow(
    session_id: str, frame: bytes, content_type: str, ts: float | None, idempotency_key: str | None, retries: int
) -> Flow[FrameAccepted]:
    """``POST /v1/sessions/{id}/frames``: one frame over HTTP, retried safely under its ``Idempotency-Key``
    (yours, or a fresh one): a retry of a frame that was stored answers the seq it was stored as."""
    params = {"ts": ts} if ts is not None else None
    headers = {"Content-Type": content_type, "Idempotency-Key": idempotency_key or f"gpurelay-py-{uuid.uuid4()}"}
    request = Request(
        "POST", f"/v1/sessions/{segment(session_id)}/frames", params=params, content=frame, headers=headers
    )
    return call(request, FrameAccepted, retries)
