"""Flows both clients run for the App API's reading and bulk verbs: a page of sessions, the robots and a
robot's joint history, cancel many jobs, the workloads (``/v1/kinds``) and usage (``/v1/usage``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gpurelay_client._core import Flow, Request, call, segment
from gpurelay_client._models import JobsCancelOut, JointHistory, KindList, RobotList, SessionList, UsageOut


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters: ``None`` left out, times as ISO 8601."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items() if v is not None}


def sessions_page_flow(filters: Mapping[str, Any], cursor: str | None, retries: int) -> Flow[SessionList]:
    """``GET /v1/sessions``: one page, newest first."""
    return call(Request("GET", "/v1/sessions", params=_params({**filters, "cursor": cursor})), SessionList, retries)


def robots_flow(retries: int) -> Flow[RobotList]:
    """``GET /v1/robots``: the tenant's robots, their latest sample and bound session."""
    return call(Request("GET", "/v1/robots"), RobotList, retries)


def joints_flow(robot_id: str, window: Mapping[str, Any], cursor: str | None, retries: int) -> Flow[JointHistory]:
    """``GET /v1/robots/{id}/joints``: one page of the robot's samples, oldest first."""
    params = _params({**window, "cursor": cursor})
    return call(Request("GET", f"/v1/robots/{segment(robot_id)}/joints", params=params), JointHistory, retries)


def cancel_many_flow(ids: Sequence[str] | None, where: Mapping[str, Any], retries: int) -> Flow[JobsCancelOut]:
    """``POST /v1/jobs:cancel`` by ids or a filter (idempotent, so retried)."""
    wanted = _params(where)
    if (ids is None) == (not wanted):
        raise TypeError("cancel_many takes ids or a filter (kind, status, subject, created_before), not both")
    body = {"ids": list(ids)} if ids is not None else {"filter": wanted}
    return call(Request("POST", "/v1/jobs:cancel", json=body, retryable=True), JobsCancelOut, retries)


def kinds_flow(retries: int) -> Flow[KindList]:
    """``GET /v1/kinds``: each workload's params schema, inputs, result, GPUs and price."""
    return call(Request("GET", "/v1/kinds"), KindList, retries)


def usage_flow(filters: Mapping[str, Any], retries: int) -> Flow[UsageOut]:
    """``GET /v1/usage``: jobs, sessions, GPU-seconds and cost per group, and the quotas."""
    return call(Request("GET", "/v1/usage", params=_params(filters)), UsageOut, retries)
