"""Reading robots: ``GET /v1/robots`` (KV ``robots``: each robot's latest sample, and the session bound to
it) and ``GET /v1/robots/{robot_id}/joints`` (its samples from the TELEMETRY stream, oldest first).

A history page is read by an ephemeral pull consumer (no acks, in memory, filtered to the robot's
subject) from the cursor's sequence, else from ``since`` (when the gateway stored the samples), up to
the robot's last stored sample at the time of the request, at most ``limit`` samples
(``joints_page_max``), stopping at ``until``. Pages are contiguous stretches of the log: read in
turn they give every sample once, in order. The oldest samples leave the stream past its byte cap.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import AwareDatetime, ValidationError

from contracts.api.robot_views import (
    JointHistory,
    JointRecord,
    RobotList,
    RobotOut,
    RobotSession,
    decode_seq_cursor,
    encode_seq_cursor,
)
from contracts.envelope import EventEnvelope
from contracts.events.robots import JointSample
from contracts.ids import ID_PATTERN, tenant_key_filter
from contracts.job_record import JobRecord
from contracts.streams import TELEMETRY
from services.common.auth.apikeys import Principal
from services.common.http.problem import field_error, problem_responses, unprocessable
from services.common.nats.kv import kv_entries
from services.gateway.deps import RobotsRead, StateDep, check_robot
from services.gateway.jobs.listing import listed
from services.gateway.state import GatewayState

router = APIRouter(prefix="/v1/robots", tags=["robots"])
FETCH_TIMEOUT_S = 5.0
FETCH_BATCH = 500


async def _bound_sessions(state: GatewayState, tenant: str) -> dict[str, JobRecord]:
    """The running sessions of ``tenant`` by the robot each is bound to (the newest when several)."""
    entries = await kv_entries(state.kv.sessions, tenant_key_filter(tenant))
    bound: dict[str, str] = {}
    for item in sorted(entries, key=lambda item: item.key):
        try:
            robot_id, session_id = json.loads(item.value)["robot_id"], item.key.partition(".")[2]
        except (ValueError, KeyError, TypeError):
            continue
        bound[robot_id] = session_id
    records = await asyncio.gather(*(listed(state, tenant, session_id) for session_id in bound.values()))
    return {robot: r for robot, r in zip(bound, records, strict=True) if r is not None and not r.terminal}


def _robot(data: bytes, robot_id: str, sessions: dict[str, JobRecord]) -> RobotOut | None:
    try:
        sample = JointSample.model_validate_json(data)
    except ValidationError:
        return None
    record = sessions.get(robot_id)
    session = None
    if record is not None and record.session_state is not None:
        session = RobotSession(id=record.id, kind=record.kind, state=record.session_state)
    return RobotOut(id=robot_id, last_sample_at=sample.ts, joint_count=len(sample.joint_angles), session=session)


@router.get("", summary="List robots", responses=problem_responses(401, 403))
async def list_robots(request: Request, state: StateDep, principal: RobotsRead) -> RobotList:
    """The tenant's robots that sent joint angles lately (a robot-bound token: its robot only), by id, each
    with its latest sample's time, its joint count and the session bound to it while one runs; a sample this
    replica took is listed before its flush to KV."""
    entries = await kv_entries(state.kv.robots, tenant_key_filter(principal.tenant))
    latest = {item.key.partition(".")[2]: item.value for item in entries}
    latest |= request.app.state.robot_telemetry.pending_of(principal.tenant)  # this replica's, not yet in KV
    sessions = await _bound_sessions(state, principal.tenant)
    robots = []
    for robot_id in sorted(latest):
        mine = principal.robot_id is None or principal.robot_id == robot_id
        if mine and (robot := _robot(latest[robot_id], robot_id, sessions)) is not None:
            robots.append(robot)
    return RobotList(items=robots)


ONE_MICROSECOND = timedelta(microseconds=1)


def _start(after: int | None, since: datetime | None) -> ConsumerConfig:
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True)
    if after is not None:
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, after + 1
    elif since is not None:  # a microsecond early: a received_at is the stored nanoseconds rounded (up too)
        config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, since - ONE_MICROSECOND
    else:
        config.deliver_policy = DeliverPolicy.ALL
    return config


def _record(msg: Msg) -> JointRecord | None:
    try:
        envelope = EventEnvelope.from_json_bytes(msg.data)
        sample = JointSample.model_validate(envelope.data)
    except (ValidationError, ValueError):
        return None
    return JointRecord(seq=msg.metadata.sequence.stream, received_at=msg.metadata.timestamp, sample=sample)


async def read_history(
    state: GatewayState, viewer: Principal, robot_id: str, after: int | None, since: datetime | None,
    until: datetime | None, limit: int,
) -> tuple[list[JointRecord], int | None]:  # fmt: skip
    """Up to ``limit`` samples after stream sequence ``after`` (else from ``since``), stored before
    ``until``; and the sequence to continue after (``None``: nothing more up to now, or ``until`` reached)."""
    stream, subject = state.settings.ns.stream(TELEMETRY), state.subjects.robot_joints(viewer.tenant, robot_id)
    try:
        last = (await state.js.get_last_msg(stream, subject)).seq or 0
    except NotFoundError:
        return [], None
    if after is not None and after >= last:
        return [], None
    sub = await state.js.pull_subscribe(subject, stream=stream, config=_start(after, since))
    found: list[JointRecord] = []
    try:
        remaining = (await sub.consumer_info()).num_pending or 0
        while remaining > 0 and len(found) < limit:
            for msg in await sub.fetch(min(remaining, FETCH_BATCH, limit - len(found)), timeout=FETCH_TIMEOUT_S):
                remaining -= 1
                seq = msg.metadata.sequence.stream
                if seq > last or (until is not None and msg.metadata.timestamp >= until):
                    return found, None
                if (record := _record(msg)) is not None and (since is None or record.received_at >= since):
                    found.append(record)
    finally:
        await sub.unsubscribe()
    more = remaining > 0 and bool(found) and found[-1].seq < last
    return found, found[-1].seq if more else None


@router.get("/{robot_id}/joints", summary="Read a robot's joint history", responses=problem_responses(401, 403, 422))
async def joint_history(
    robot_id: str,
    state: StateDep,
    principal: RobotsRead,
    since: Annotated[AwareDatetime | None, Query(description="Samples stored at or after this time.")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Samples stored before this time.")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Page size (at most joints_page_max).")] = 1000,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> JointHistory:
    """The robot's samples from the TELEMETRY stream, oldest first, one bounded page at a time."""
    check_robot(principal, robot_id)
    if not ID_PATTERN.fullmatch(robot_id):
        raise unprocessable("The robot id is not valid.", field_error(("path", "robot_id"), "not a robot id"))
    if limit > state.settings.joints_page_max:
        raise unprocessable(
            "The page is too large.", field_error(("query", "limit"), f"at most {state.settings.joints_page_max}")
        )
    after = None
    if cursor is not None and (after := decode_seq_cursor(cursor)) is None:
        raise unprocessable("The cursor is not valid.", field_error(("query", "cursor"), "not a cursor"))
    items, next_after = await read_history(state, principal, robot_id, after, since, until, limit)
    next_cursor = encode_seq_cursor(next_after) if next_after is not None else None
    return JointHistory(robot_id=robot_id, items=items, next_cursor=next_cursor)
