"""A session's frame numbering: the FRAMES stream is the counter, KV ``sessions`` its floor.

Frame ``seq`` n+1 is published with ``Nats-Expected-Last-Subject-Sequence`` = the stream sequence of
frame n on the session's frames subject, so JetStream stores it only if frame n is still that subject's
last message: one writer wins each number (another replica, a restarted gateway), the loser reads the
subject's last frame again and takes the next. The numbers are unique, in the order the frames are
stored, and without a gap (a publish that fails takes no number). One request per frame: this process
keeps each session's last (seq, stream sequence) and reads the stream only when it is not known or
went stale. A publish refused while another of the subject is in flight (10164: a leader that lost its
quorum keeps a timed-out frame so) is sent again after a wait, as :func:`~services.common.nats.kv_writes.kv_update`
sends a KV write, and is a 503 when it stays refused; once that frame is applied, the fence refuses the
seq and the numbering reads it.

A frame sent with an ``Idempotency-Key`` is published with that key's ``Nats-Msg-Id``
(:func:`~contracts.event_ids.frame_key_msg_id`) instead of its seq's. A retry of a frame that was
stored (its first try timed out: a 503) is answered as a duplicate with the stream sequence it was stored
at, and gets the seq it was given then, within FRAMES' duplicate window: a replicated stream checks the id
before the fence, one with a single replica after it, and a fence read again passes. While that first try
is in flight it is refused (10158) and waits as above.

The session's KV entry (:class:`~contracts.api.sessions.SessionEntry`) is made before its first frame
(what binds a robot to the session) and its ``frames`` follows the numbering in the background, at most
once per :data:`CHECKPOINT_S` a session (and when the gateway stops): the floor numbering goes on from
when FRAMES no longer holds any frame of the session (its age and byte limits), and what a source-fed
session's feeder (:mod:`services.common.session_publish`, the sole writer of such a session) moves
itself. ``frames_received`` is the larger of the floor and the numbering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import nats.errors
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from contracts.api.sessions import SessionEntry
from contracts.envelope import utc_now
from contracts.event_ids import frame_key_msg_id
from contracts.ids import tenant_key
from contracts.job_record import JobRecord
from contracts.session_feed import H_SEQ
from contracts.streams import FRAMES
from services.common.http.problem import ProblemError
from services.common.nats.connection import log_failure
from services.common.nats.kv_writes import IN_FLIGHT_TRIES, WriteInFlight, in_flight_pause_s, kv_create, kv_update
from services.common.nats.publish import EXPECTED_LAST, MSG_ID, WRONG_LAST_SEQUENCE
from services.gateway.sessions.frame_keys import IN_FLIGHT, stored_as, stored_seq, unrecorded
from services.gateway.sessions.lru import Lru
from services.gateway.state import GatewayState

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 5.0
CHECKPOINT_S = 1.0
"""How often at most a session's KV floor is moved while its frames come."""
ATTEMPTS = 20
HeadersOf = Callable[[int], dict[str, str]]
"""The headers of the frame numbered ``seq``."""
Known = tuple[int, int]
"""A session's last frame: (its seq, its FRAMES stream sequence; 0 when the subject holds none)."""


def entry_of(record: JobRecord) -> SessionEntry:
    """A new KV ``sessions`` entry of ``record`` (no frame yet)."""
    robot_id = record.session.robot_id if record.session is not None else None
    kind = "splat" if record.kind == "splat" else "vlm"
    return SessionEntry(
        id=record.id, tenant=record.tenant, kind=kind, robot_id=robot_id or record.id, created_at=utc_now()
    )


class FrameNumbering:
    """Numbers and publishes the frames of live sessions, for one gateway process (see the module)."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.stream = state.settings.ns.stream(FRAMES)
        size = state.settings.session_cache_max
        self._known: Lru[Known] = Lru(size)
        self._floors: Lru[tuple[SessionEntry, int]] = Lru(size)  # the entry as last written, its revision
        self._due: dict[str, int] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}

    async def publish(
        self, record: JobRecord, data: bytes, headers_of: HeadersOf, idempotency_key: str | None = None
    ) -> int:
        """Publish ``data`` as the session's next frame (``headers_of(seq)`` its headers); its seq, or the
        seq ``idempotency_key``'s frame was stored as (422 when that was another frame).

        The caller holds the session's lock in this process. 503 when it cannot be stored."""
        key = tenant_key(record.tenant, record.id)
        subject = self.state.subjects.session_frames(record.tenant, record.id)
        if self._floors.get(key) is None:
            await self._floor(record, key, create=True)
        msg_id = None if idempotency_key is None else frame_key_msg_id(record.id, idempotency_key)
        refused_in_flight = 0
        for _ in range(ATTEMPTS):
            known = self._known.get(key) or await self._read(record, key, subject)
            seq = known[0] + 1
            headers = headers_of(seq) | {EXPECTED_LAST: str(known[1])}
            if msg_id is not None:
                headers[MSG_ID] = msg_id
            try:
                ack = await self.state.js.publish(subject, data, headers=headers, timeout=PUBLISH_TIMEOUT_S)
            except APIError as exc:
                if exc.err_code in IN_FLIGHT:  # another frame's publish, or this key's, not applied yet
                    refused_in_flight += 1
                    if refused_in_flight == IN_FLIGHT_TRIES:
                        raise unrecorded(WriteInFlight(f"{subject}: a frame stayed in flight")) from exc
                    self._known.put(key, known)  # sent again as it is, not read again
                    await asyncio.sleep(in_flight_pause_s(refused_in_flight))
                    continue  # once applied, the fence refuses this seq (10071): read that frame then
                self._known.pop(key)
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    continue  # another writer took seq: read its frame and go on after it
                raise unrecorded(exc) from exc
            except (nats.errors.Error, TimeoutError) as exc:
                self._known.pop(key)  # stored or not: read again next time
                raise unrecorded(exc) from exc
            if ack.duplicate and msg_id is not None:  # this key's frame, stored before
                self._known.pop(key)
                return await stored_as(self.state.js, self.stream, subject, int(ack.seq or 0), data)
            self._known.put(key, (seq, ack.seq))
            if ack.duplicate:
                continue  # that seq's message id was taken within the duplicate window: it is the last one
            self._checkpoint(key, seq)
            return seq
        raise ProblemError(503, "The session's frame numbering is contended; retry.", headers={"Retry-After": "1"})

    async def stored_seq(self, record: JobRecord, data: bytes, idempotency_key: str) -> int | None:
        """The seq ``idempotency_key``'s frame was stored as, or None (:func:`.frame_keys.stored_seq`)."""
        subject = self.state.subjects.session_frames(record.tenant, record.id)
        msg_id = frame_key_msg_id(record.id, idempotency_key)
        return await stored_seq(self.state.js, self.stream, subject, msg_id, data, PUBLISH_TIMEOUT_S)

    async def _read(self, record: JobRecord, key: str, subject: str) -> Known:
        """The session's last frame from FRAMES, or its KV floor when FRAMES holds none."""
        floor = await self._floor(record, key)
        try:
            last = await self.state.js.get_last_msg(self.stream, subject)
        except NotFoundError:
            return floor, 0
        return max(floor, int((last.headers or {}).get(H_SEQ, 0))), int(last.seq or 0)

    async def _floor(self, record: JobRecord, key: str, *, create: bool = False) -> int:
        """The session's KV floor (0 without an entry); ``create``: the entry made if there is none."""
        kv = self.state.kv.sessions
        try:
            got = await kv.get(key)
        except KeyNotFoundError:
            if not create:
                return 0
            entry = entry_of(record)
            try:
                self._floors.put(key, (entry, await kv_create(kv, key, entry.model_dump_json().encode())))
                return 0
            except KeyWrongLastSequenceError:
                try:
                    got = await kv.get(key)
                except KeyNotFoundError:  # an earlier try's create, still in flight (a leader without its quorum)
                    raise WriteInFlight(f"{key}: the session's entry is still being created") from None
        entry = SessionEntry.model_validate_json(got.value or b"")
        self._floors.put(key, (entry, got.revision or 0))
        return entry.frames

    async def frames_received(self, record: JobRecord) -> int:
        """The session's last frame seq (0 before the first): the numbering's or its floor, the larger."""
        key = tenant_key(record.tenant, record.id)
        known = self._known.get(key)
        if known is None:
            known = await self._read(record, key, self.state.subjects.session_frames(record.tenant, record.id))
            self._known.put(key, known)
            return known[0]
        try:
            got = await self.state.kv.sessions.get(key)
        except KeyNotFoundError:
            return known[0]
        return max(known[0], SessionEntry.model_validate_json(got.value or b"").frames)

    def _checkpoint(self, key: str, seq: int) -> None:
        self._due[key] = max(self._due.get(key, 0), seq)
        if key not in self._writers:
            self._writers[key] = asyncio.create_task(self._write_floor(key), name=f"frame-floor-{key}")

    async def _write_floor(self, key: str) -> None:
        try:
            while key in self._due:
                await asyncio.sleep(CHECKPOINT_S)
                seq = self._due[key]
                await self._raise_floor(key, seq)
                if self._due.get(key) == seq:
                    del self._due[key]
        finally:
            self._writers.pop(key, None)

    async def _raise_floor(self, key: str, seq: int) -> None:
        """Move the session's KV ``frames`` up to ``seq`` (never down); a failure is logged, the stream has it."""
        kv = self.state.kv.sessions
        try:
            for _ in range(ATTEMPTS):
                known = self._floors.get(key)
                if known is None:
                    got = await kv.get(key)
                    known = (SessionEntry.model_validate_json(got.value or b""), got.revision or 0)
                entry, revision = known
                if entry.frames >= seq:
                    return
                moved = entry.model_copy(update={"frames": seq})
                try:
                    revision = await kv_update(kv, key, moved.model_dump_json().encode(), revision)
                    self._floors.put(key, (moved, revision))
                    return
                except KeyWrongLastSequenceError:
                    self._floors.pop(key)
        except Exception as exc:  # noqa: BLE001 - the stream has the frames; the next checkpoint moves it
            log_failure(log, exc, "could not move the frame floor of session %s", key)

    async def close(self) -> None:
        """Write every floor still due now (the gateway stops)."""
        writers = list(self._writers.values())
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        due, self._due = self._due, {}
        await asyncio.gather(*(self._raise_floor(key, seq) for key, seq in due.items()))
