"""A session's input published as a client's is, for a session fed from its source (a dataset, a recording).

:class:`NatsSourcePublisher` puts each frame on ``sessions.{tenant}.{id}.frames`` (FRAMES) with the
headers the gateway's intake gives a client's frame (:func:`~contracts.session_feed.frame_headers`,
``Nats-Msg-Id`` = ``frame-{id}-{seq}``, so a resumed feeder's repeat is stored once) and moves the
session's frame counter (KV ``sessions``: the feeder is its only writer, the gateway refusing client
frames for such a session); each joint sample as a ``robot.joints`` envelope on the session's own
robot (TELEMETRY); a reset or stop on ``.control``, a stop also as ``session.stop_requested``. A local
pool worker uses it straight from NATS; the gateway uses it for a Modal worker's feeder
(``/v1/internal/sessions/{id}/source``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts import streams
from contracts.api.sessions import SessionEntry
from contracts.event_ids import reset_msg_id, stop_requested_event_id
from contracts.events.registry import EventType, make_event
from contracts.events.robots import JointSample
from contracts.events.sessions import SessionStopRequestedPayload
from contracts.ids import tenant_key
from contracts.session_feed import ControlMessage, Pose, frame_headers
from contracts.subjects import Namespace, Subjects
from services.common.nats.publish import publish_event, until_answered

PUBLISH_TIMEOUT_S = 10.0


class NatsSourcePublisher:
    """Publishes one sourced session's frames, joint samples and control (see the module docstring)."""

    def __init__(
        self, js: JetStreamContext, sessions: KeyValue, ns: Namespace, entry: SessionEntry, source: str
    ) -> None:
        self.js, self.sessions, self.subjects, self.entry, self.source = js, sessions, Subjects(ns), entry, source
        self.key = tenant_key(entry.tenant, entry.id)

    @classmethod
    async def open(cls, js: JetStreamContext, ns: Namespace, entry: SessionEntry, source: str) -> NatsSourcePublisher:
        """A publisher for the session ``entry`` names (KV ``sessions`` bound, again while JetStream is away
        for a moment: a stream's info is refused with 10008 while the cluster elects its meta leader)."""
        sessions = await until_answered(lambda: js.key_value(ns.bucket(streams.KV_SESSIONS)), "KV sessions")
        return cls(js, sessions, ns, entry, source)

    async def published(self) -> int:
        """The last frame seq published for the session (0 before the first)."""
        try:
            got = await self.sessions.get(self.key)
        except KeyNotFoundError:
            return 0
        return SessionEntry.model_validate_json(got.value or b"").frames

    async def frame(self, seq: int, ts: float, content_type: str, data: bytes, pose: Pose | None = None) -> None:
        """Frame ``seq`` (from 1, in order) with its capture time; the frame counter follows."""
        e = self.entry
        headers = frame_headers(e.id, seq, ts, content_type, pose)
        await self.js.publish(
            self.subjects.session_frames(e.tenant, e.id), data, headers=headers, timeout=PUBLISH_TIMEOUT_S
        )
        moved = e.model_copy(update={"frames": seq})
        await self.sessions.put(self.key, moved.model_dump_json().encode())

    async def joints(self, ts: float, angles: list[float]) -> None:
        """One sample of the session's robot at ``ts`` (UNIX s, radians)."""
        e = self.entry
        sample = JointSample(robot_id=e.robot_id, joint_angles=angles, ts=datetime.fromtimestamp(ts, UTC))
        event = make_event(EventType.ROBOT_JOINTS, sample, tenant=e.tenant, source=self.source)
        subject = self.subjects.robot_joints(e.tenant, e.robot_id)
        await self.js.publish(subject, event.to_json_bytes(), timeout=PUBLISH_TIMEOUT_S)

    async def control(self, action: Literal["stop", "reset"], reason: str, nonce: int) -> None:
        """A reset (``nonce`` makes it one message: the seq of the frame after it) or the stop."""
        e = self.entry
        stop = action == "stop"
        msg_id = stop_requested_event_id(e.id) if stop else reset_msg_id(e.id, nonce)
        body = ControlMessage(action=action, reason=reason).model_dump_json().encode()
        subject = self.subjects.session_control(e.tenant, e.id)
        await self.js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}, timeout=PUBLISH_TIMEOUT_S)
        if stop:
            event = make_event(
                EventType.SESSION_STOP_REQUESTED, SessionStopRequestedPayload(reason=reason), tenant=e.tenant,
                source=self.source, job_id=e.id, kind=e.kind, event_id=stop_requested_event_id(e.id),
            )  # fmt: skip
            await publish_event(self.js, self.subjects.job_event(e.tenant, e.id, "stop_requested"), event)
