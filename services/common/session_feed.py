"""A live session's feed read from JetStream: frames and control (FRAMES) and the robot's joints (TELEMETRY).

:class:`NatsSessionFeed` holds two ordered consumers (no durable state on the server; each starts at an
explicit sequence, and a gap makes nats-py recreate it from the last sequence seen, or from the stream's
first when none came yet: what precedes the start is dropped here) and hands every item to ``on_item`` in
stream order: ``(FeedFrame, image bytes)``, ``(FeedControl, None)`` or ``(FeedJoints, None)``, and once,
as it starts, ``(FeedBacklog, None)``: the session's last FRAMES sequence then. ``on_item`` runs on the
event loop and must not block: the worker's session input and the gateway's feed relay both put items
into bounded buffers.

Used by a local pool worker (straight from NATS) and by the gateway's feed socket for workers that
cannot reach NATS (Modal), so both paths see the same items.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from contracts import streams
from contracts.session_feed import (
    H_POSE,
    H_SEQ,
    H_TS,
    ControlMessage,
    FeedBacklog,
    FeedControl,
    FeedFrame,
    FeedJoints,
)
from contracts.subjects import Namespace, Subjects
from services.common.nats.kv import last_seq, seq_before
from services.common.nats.publish import until_answered
from services.common.nats.quiet_watch import renew_on_reconnect

log = logging.getLogger(__name__)
FeedItem = FeedFrame | FeedJoints | FeedControl | FeedBacklog
OnItem = Callable[[FeedItem, bytes | None], None]
PENDING_BYTES = 64 * 1024 * 1024
"""Client-side bound on messages received and not yet handed over (a slow ``on_item`` is cut)."""


@dataclass(frozen=True)
class FeedStart:
    """Where a feed starts: after these stream sequences (0: the beginning of the session's frames,
    and joint samples from ``joints_since``)."""

    after_frames: int = 0
    after_joints: int = 0
    joints_since: datetime | None = None


def parse_frame_message(msg: Msg) -> FeedItem | None:
    """The feed item of a FRAMES message (a frame or a control), or ``None`` when malformed."""
    stream_seq = msg.metadata.sequence.stream
    try:
        if msg.subject.endswith(".control"):
            control = ControlMessage.model_validate_json(msg.data)
            return FeedControl(action=control.action, reason=control.reason, stream_seq=stream_seq)
        headers = msg.headers or {}
        pose = json.loads(headers[H_POSE]) if headers.get(H_POSE) else None
        return FeedFrame(
            seq=int(headers[H_SEQ]),
            ts=float(headers[H_TS]),
            content_type=headers.get("Content-Type", ""),
            pose=pose,
            stream_seq=stream_seq,
        )
    except (KeyError, ValueError, ValidationError):
        log.warning("skipping a malformed session message on %s", msg.subject)
        return None


def parse_joints_message(msg: Msg) -> FeedJoints | None:
    """The feed item of a ``robot.joints`` envelope, or ``None`` when malformed."""
    try:
        data = json.loads(msg.data)["data"]
        ts = datetime.fromisoformat(data["ts"]).timestamp()
        return FeedJoints(ts=ts, joint_angles=data["joint_angles"], stream_seq=msg.metadata.sequence.stream)
    except (KeyError, ValueError, TypeError, ValidationError):
        log.warning("skipping a malformed joint sample on %s", msg.subject)
        return None


class NatsSessionFeed:
    """The items of one session, from two ordered consumers, to ``on_item``."""

    def __init__(
        self,
        js: JetStreamContext,
        namespace: Namespace,
        tenant: str,
        session_id: str,
        robot_id: str | None,
        on_item: OnItem,
        start: FeedStart | None = None,
    ) -> None:
        self.js, self.ns, self.on_item = js, namespace, on_item
        self.tenant, self.session_id, self.robot_id = tenant, session_id, robot_id
        self.start_at = start or FeedStart()
        self._joints_floor = self.start_at.after_joints
        """The TELEMETRY sequence at or before which no sample is handed on."""
        self._subs: list[Any] = []

    async def start(self) -> None:
        """Subscribe; items start arriving at ``on_item``, and a :class:`FeedBacklog` saying where the
        session's frames and its robot's samples stood (the samples' consumer opens after it)."""
        subjects = Subjects(self.ns)
        frames = subjects.session_frames(self.tenant, self.session_id).rpartition(".")[0] + ".*"
        self._subs.append(await self._ordered(frames, streams.FRAMES, self._on_frames, self._frames_config()))
        joints, config, joints_backlog = None, None, None
        if self.robot_id is not None:
            joints = subjects.robot_joints(self.tenant, self.robot_id)
            config = await until_answered(lambda: self._joints_config(joints), "the session's joints floor")
            telemetry = self.ns.stream(streams.TELEMETRY)
            last = await until_answered(lambda: last_seq(self.js, telemetry, joints), "the session's last joints")
            joints_backlog = last if last > self._joints_floor else None  # stored, still to come
        frames_seq = await until_answered(lambda: self._last_frames_seq(subjects), "the session's last frame")
        backlog = FeedBacklog(stream_seq=frames_seq, joints_stream_seq=joints_backlog)
        self.on_item(backlog, None)
        if joints is not None and config is not None:
            self._subs.append(await self._ordered(joints, streams.TELEMETRY, self._on_joints, config))

    async def _ordered(self, subject: str, stream: str, cb: Any, config: ConsumerConfig) -> Any:
        """An ordered consumer of ``subject``, made again while JetStream is away for a moment (a cluster
        electing its meta leader answers 10008: two sessions of the fault suite failed so, every attempt,
        while a node was partitioned); each try with a copy of ``config`` (nats-py fills it in)."""

        async def subscribe() -> Any:
            return await self.js.subscribe(
                subject,
                stream=self.ns.stream(stream),
                cb=cb,
                ordered_consumer=True,
                config=copy.copy(config),
                pending_bytes_limit=PENDING_BYTES,
            )

        sub = await until_answered(subscribe, f"the session feed's consumer of {subject}")
        return renew_on_reconnect(sub)  # a restarted server lost it: read on at once, not after 10-20 s

    async def _last_frames_seq(self, subjects: Subjects) -> int:
        """The session's last FRAMES stream sequence (frames and control; 0 when it has none)."""
        stream = self.ns.stream(streams.FRAMES)
        frames = subjects.session_frames(self.tenant, self.session_id)
        control = subjects.session_control(self.tenant, self.session_id)
        return max(await last_seq(self.js, stream, frames), await last_seq(self.js, stream, control))

    def _frames_config(self) -> ConsumerConfig:
        if self.start_at.after_frames:
            return ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.start_at.after_frames + 1
            )
        return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)

    async def _joints_config(self, subject: str) -> ConsumerConfig:
        """Samples after ``after_joints``, else those stored since ``joints_since``, else new ones: always from
        an explicit sequence (:func:`~services.common.nats.kv.seq_before`: nats-py cannot make a consumer
        started by time again)."""
        s, stream = self.start_at, self.ns.stream(streams.TELEMETRY)
        if s.after_joints:
            floor = s.after_joints
        elif s.joints_since is not None:
            floor = await seq_before(self.js, stream, s.joints_since, subject)
        else:
            floor = await last_seq(self.js, stream, subject)
        self._joints_floor = floor
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=floor + 1)

    # Nothing at or before where the feed starts is handed on: nats-py makes an ordered consumer that had
    # no message yet again from the stream's first (two missed heartbeats, a restarted server).
    async def _on_frames(self, msg: Msg) -> None:
        item = parse_frame_message(msg)
        if item is not None and item.stream_seq > self.start_at.after_frames:
            self.on_item(item, msg.data if isinstance(item, FeedFrame) else None)

    async def _on_joints(self, msg: Msg) -> None:
        item = parse_joints_message(msg)
        if item is not None and item.stream_seq > self._joints_floor:
            self.on_item(item, None)

    async def stop(self) -> None:
        """Unsubscribe (idempotent)."""
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may be gone already
                log.debug("session feed unsubscribe failed", exc_info=True)
