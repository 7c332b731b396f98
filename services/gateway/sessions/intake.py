"""What the gateway does for live sessions: start them, take their frames, pass on stop and reset.

A session is a job (created through :func:`~services.gateway.jobs.routes.submit_job`), so its record
is the job record. Frames go to ``sessions.{tenant}.{id}.frames`` (FRAMES) with their description in
headers and ``Nats-Msg-Id`` = ``frame-{id}-{seq}``, numbered by that subject itself (one writer at a
time per session in this process; replicas take turns: :mod:`~services.gateway.sessions.numbering`).
Stop and reset go on ``.control`` in the same stream, so the worker sees them in order with the
frames; a stop is also the job event ``session.stop_requested`` (``stop-{id}``), which moves the
record to ``stopping``.

Bounded: frames per second per session (a token bucket, ``session_max_frames_per_s``), the
per-session locks, buckets, frame numbers and cached records (``session_cache_max`` each, least recently used
dropped; a record is re-read after ``session_record_cache_s``).
"""

from __future__ import annotations

import asyncio
import time

import nats.errors
from nats.js.errors import KeyNotFoundError

from contracts.api.sessions import FrameAccepted
from contracts.event_ids import reset_msg_id, stop_requested_event_id
from contracts.events.registry import EventType, make_event
from contracts.events.sessions import SessionStopRequestedPayload
from contracts.ids import InvalidIdError, tenant_key
from contracts.job_record import JobRecord
from contracts.record_repair import read_record
from contracts.session_feed import ControlMessage, frame_headers
from services.common.http.problem import ProblemError
from services.common.observability.metrics import SESSION_FRAMES
from services.gateway.sessions.frame_keys import unrecorded
from services.gateway.sessions.lru import Lru, TokenBucket
from services.gateway.sessions.numbering import FrameNumbering
from services.gateway.state import GatewayState

PUBLISH_TIMEOUT_S = 5.0


def gone(record: JobRecord) -> ProblemError:
    """409 for input to a session that ended or is stopping."""
    state = record.session_state
    return ProblemError(409, f"The session is {state}; it takes no more input.", state=str(state))


class SessionIntake:
    """Frames and control of live sessions, for one gateway process."""

    def __init__(self, state: GatewayState) -> None:
        self.state, self.settings = state, state.settings
        size = self.settings.session_cache_max
        self._records: Lru[tuple[JobRecord, float]] = Lru(size)
        self._locks: Lru[asyncio.Lock] = Lru(size)
        self._buckets: Lru[TokenBucket] = Lru(size)
        self._stopped: Lru[bool] = Lru(size)
        self.numbering = FrameNumbering(state)

    async def record(self, tenant: str, session_id: str, *, fresh: bool = False) -> JobRecord:
        """The tenant's session record (cached briefly unless ``fresh``); 404 for anything else (a
        malformed id included: no session can have it);
        :class:`~contracts.record_repair.UnreadableRecordError` (409) for a
        record that does not validate."""
        try:
            key = tenant_key(tenant, session_id)
        except InvalidIdError:
            raise ProblemError(404, "No such session.") from None
        cached = None if fresh else self._records.get(key)
        if cached is not None and time.monotonic() - cached[1] < self.settings.session_record_cache_s:
            return cached[0]
        try:
            entry = await self.state.kv.jobs.get(key)
        except KeyNotFoundError:
            entry = None
        record = read_record(entry.value) if entry is not None and entry.value else None
        if record is None or record.session is None:
            raise ProblemError(404, f"No session {session_id!r}.")
        return self._records.put(key, (record, time.monotonic()))[0]

    async def accept_frame(
        self,
        record: JobRecord,
        data: bytes,
        content_type: str,
        ts: float | None,
        pose: list[float] | None,
        idempotency_key: str | None = None,
    ) -> FrameAccepted:
        """Number and publish one frame of a live session (checked image bytes); 409 once it ended. A frame
        sent again with its ``idempotency_key`` answers the seq it was stored as, after the end too."""
        key, record = tenant_key(record.tenant, record.id), self.current(record)
        if record.terminal or (record.session is not None and record.session.stop_requested):
            stored = None if idempotency_key is None else await self.numbering.stored_seq(record, data, idempotency_key)
            if stored is not None:  # a retry of a frame stored before the session ended
                return FrameAccepted(seq=stored, frame_count=stored)
            SESSION_FRAMES.labels("ended").inc()
            raise gone(record)
        if getattr(record.spec, "source", None) is not None:
            raise ProblemError(409, "The session is fed from its source; it takes no frames.")
        self._check_rate(key)
        lock = self._locks.get(key) or self._locks.put(key, asyncio.Lock())
        at = ts if ts is not None else time.time()
        async with lock:
            seq = await self.numbering.publish(
                record, data, lambda n: frame_headers(record.id, n, at, content_type, pose), idempotency_key
            )
        SESSION_FRAMES.labels("accepted").inc()
        return FrameAccepted(seq=seq, frame_count=seq)

    def current(self, record: JobRecord) -> JobRecord:
        """``record`` with a stop this process passed on in force (a record read before it, or cached)."""
        if self._stopped.get(tenant_key(record.tenant, record.id)):
            return record.with_session(stop_requested=True)
        return record

    def _check_rate(self, key: str) -> None:
        rate, now = self.settings.session_max_frames_per_s, time.monotonic()
        bucket = self._buckets.get(key) or self._buckets.put(key, TokenBucket(rate, rate, now))
        wait = bucket.take(now)
        if wait:
            SESSION_FRAMES.labels("rate_limited").inc()
            retry = str(max(1, round(wait + 0.5)))
            raise ProblemError(429, f"At most {rate:g} frames a second per session.", headers={"Retry-After": retry})

    async def frames_received(self, record: JobRecord) -> int:
        """The last frame seq the session's frames were given (0 before the first)."""
        return await self.numbering.frames_received(record)

    async def control(self, record: JobRecord, action: str) -> None:
        """Pass ``stop`` or ``reset`` to the worker (in order with the frames); 409 once it ended."""
        if record.terminal:
            raise gone(record)
        key = tenant_key(record.tenant, record.id)
        if action == "stop":  # in force from now: a frame racing the stop's publish is refused
            self._stopped.put(key, True)
        try:
            await self._pass_control(record, action)
        except BaseException:
            if action == "stop":
                self._stopped.put(key, False)
            raise

    async def _pass_control(self, record: JobRecord, action: str) -> None:
        message = ControlMessage(action="stop" if action == "stop" else "reset", reason="requested by the client")
        subject = self.state.subjects.session_control(record.tenant, record.id)
        msg_id = stop_requested_event_id(record.id) if action == "stop" else reset_msg_id(record.id, time.time_ns())
        await self._publish(subject, message.model_dump_json().encode(), {"Nats-Msg-Id": msg_id})
        if action == "stop":
            event = make_event(
                EventType.SESSION_STOP_REQUESTED,
                SessionStopRequestedPayload(reason="requested by the client"),
                tenant=record.tenant,
                source="gateway",
                job_id=record.id,
                kind=record.kind,
                event_id=stop_requested_event_id(record.id),
            )
            subject = self.state.subjects.job_event(record.tenant, record.id, "stop_requested")
            await self.state.publish_once(subject, event)

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        try:
            await self.state.js.publish(subject, data, headers=headers, timeout=PUBLISH_TIMEOUT_S)
        except (nats.errors.Error, TimeoutError) as exc:
            raise unrecorded(exc) from exc
