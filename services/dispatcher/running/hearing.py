"""Whether a worker has gone silent, judged only over time this replica could have heard it.

A worker's heartbeats reach a supervisor through NATS, the log and the fold. While the connection is
down, the server stands still (a paused process, a frozen VM) or this process does, no heartbeat can
arrive; while the fold lags (its partition pinned to a replica that stands still), the record does
not show the heartbeats the log holds. A supervisor that counted such time would fail healthy
attempts. So :class:`LinkWatch` keeps a round trip to the server going every :data:`INTERVAL_S`: one
that fails or takes longer than :data:`STALL_S`, or a gap between two longer than
``INTERVAL_S + STALL_S``, moves :attr:`LinkWatch.regained_at` to the moment the view came back; and
before a silence is called, :meth:`Hearing.last_sign` asks again and reads the attempt's last
heartbeat from the log itself. The round trips are PINGs: no traffic on any subject.

The log stores a heartbeat only once the stream's turn comes: a server storing a flood (every write
synced, a loaded disk) can be seconds behind while it answers PINGs at once, and a CI run called every
held attempt silent so. So while it supervises an attempt a replica also hears its heartbeats as the
server passes them on (:meth:`Hearing.listening`: a plain subscription on that job's heartbeat
subject), which does not wait for the store.

Every time here is this process's monotonic clock (:mod:`~services.dispatcher.running.supervision`): a
heartbeat the log holds counts from when this replica first found it there (its stream sequence new),
so a step of the wall clock never makes one look old.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from contracts import streams
from contracts.subjects import Subjects
from services.common.nats.round_trip import round_trip

log = logging.getLogger(__name__)
INTERVAL_S = 0.5
STALL_S = 1.0
"""A round trip or a gap between two longer than this (beyond the interval) is a stall."""
ROUND_TRIP_TIMEOUT_S = 5.0


def since_stamp(stamp: float) -> float:
    """The monotonic time of a wall-clock ``stamp`` (Unix seconds, maybe another host's), by its age
    now; a stamp from the future counts as now."""
    return time.monotonic() - max(0.0, time.time() - stamp)


class LinkWatch:
    """This replica's view of NATS: :attr:`regained_at`, the (monotonic) time it last came back."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.regained_at = time.monotonic()
        self._last_seen: float | None = None
        """The loop time of the last round trip answered (``None``: the last one failed)."""

    async def run(self) -> None:
        """A round trip every :data:`INTERVAL_S`, until cancelled."""
        while True:
            await asyncio.sleep(INTERVAL_S)
            await self.observing_since()

    async def observing_since(self) -> float:
        """A round trip now; when this replica's unbroken view of NATS began (monotonic)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        gap = self._last_seen is None or began - self._last_seen > INTERVAL_S + STALL_S
        if not await round_trip(self.nc, ROUND_TRIP_TIMEOUT_S):  # blind now, so no silence has begun
            self._last_seen = None
            self.regained_at = time.monotonic()
            return self.regained_at
        answered = loop.time()
        if gap or answered - began > STALL_S:
            self.regained_at = time.monotonic()
        self._last_seen = answered
        return self.regained_at


class Hearing:
    """What a supervisor asks before it calls an attempt silent: the link, then the log."""

    def __init__(self, nc: NatsClient, subjects: Subjects) -> None:
        self.link = LinkWatch(nc)
        self.nc, self.subjects = nc, subjects
        self.stream = subjects.ns.stream(streams.JOBS)
        self._heard: dict[tuple[str, str, int], float] = {}
        """When each attempt listened to last had a heartbeat passed on (monotonic); one entry per
        supervised attempt, gone when its supervision ends."""
        self._logged: dict[tuple[str, str, int], tuple[int, float]] = {}
        """The stream sequence of each listened attempt's last heartbeat found in the log, and when it
        was first found there (monotonic); gone, as :attr:`_heard`'s entry, when its supervision ends."""

    @contextlib.asynccontextmanager
    async def listening(self, tenant: str, job_id: str, attempt: int) -> AsyncIterator[None]:
        """Hear the attempt's heartbeats as they pass (:meth:`heard`) while the block runs."""
        key = (tenant, job_id, attempt)

        async def on_heartbeat(msg: Msg) -> None:
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(msg.data).get("attempt") == attempt:
                    self._heard[key] = time.monotonic()

        subject = self.subjects.job_event(tenant, job_id, "heartbeat")
        sub = None
        try:
            sub = await self.nc.subscribe(subject, cb=on_heartbeat)
        except Exception as exc:  # noqa: BLE001 - the log alone then, as before
            log.warning("cannot listen to %s (%s); its silence is judged from the log", subject, exc)
        try:
            yield
        finally:
            self._heard.pop(key, None)
            self._logged.pop(key, None)
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _last_heartbeat(self, tenant: str, job_id: str) -> RawStreamMsg:
        """The job's last heartbeat in JOBS: as JOBS stores it (its slot token), else as published (a
        stream made before JOBS stored slots)."""
        js = self.nc.jetstream()
        try:
            return await js.get_last_msg(self.stream, self.subjects.stored_job_event(tenant, job_id, "heartbeat"))
        except NotFoundError:
            return await js.get_last_msg(self.stream, self.subjects.job_event(tenant, job_id, "heartbeat"))

    def heard(self, tenant: str, job_id: str, attempt: int) -> float:
        """When a heartbeat of the attempt last passed by (0: none heard, or not listening)."""
        return self._heard.get((tenant, job_id, attempt), 0.0)

    async def last_sign(self, tenant: str, job_id: str, attempt: int) -> float:
        """The latest of: when this replica's view of NATS began, when it last heard the attempt's
        heartbeat pass, and when the log's last heartbeat of the attempt was first found there (all
        monotonic; the first one found counts by the age of its stamp). Called while :meth:`listening`
        to the attempt. The record can lag behind the log, and the log behind the heartbeats passing."""
        since = max(await self.link.observing_since(), self.heard(tenant, job_id, attempt))
        try:
            last = await self._last_heartbeat(tenant, job_id)
        except NotFoundError:
            return since
        except Exception:  # noqa: BLE001 - the log cannot be read now: no silence can be called now
            return time.monotonic()
        if last.time is None or json.loads(last.data or b"{}").get("attempt") != attempt:
            return since
        key, seq = (tenant, job_id, attempt), last.seq or 0
        logged = self._logged.get(key)
        if logged is None or logged[0] != seq:
            found = since_stamp(last.time.timestamp()) if logged is None else time.monotonic()
            logged = self._logged[key] = (seq, found)
        return max(since, logged[1])
