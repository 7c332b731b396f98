"""The records of the attempts this replica holds, followed as KV ``jobs`` stores them.

KV ``jobs`` republishes each revision of a record once it is stored, in stream order and with its
stream sequence, on ``records.{tenant}.{job_id}`` (the bucket's ``republish``,
:mod:`contracts.streams`). A held attempt subscribes to its own job's subject (a core subscription:
nothing on the server but the interest) *before* it reads the record: a revision stored before the
read is in what the read returns, one stored after reaches the subscription, so none is missed.
So each replica receives only the writes of the jobs it holds, where a KV watch of the bucket
would hand every replica every write of every job (and a parse of each).

Revisions published while the connection was down are lost to the subscription: after a reconnect
:meth:`HeldRecords.refresh` reads the followed records again (the replica calls it every
``ticket_ack_wait_s / 3``, with the tickets' keep-alive).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.kv import KV_OP
from pydantic import ValidationError

from contracts.job_record import JobRecord
from contracts.subjects import Subjects
from services.dispatcher.store import JobStore

log = logging.getLogger(__name__)
SEQUENCE = "Nats-Sequence"
"""The header of a republished entry that holds its stream sequence (the record's revision)."""

Offer = Callable[[JobRecord, int], None]
"""Takes a revision of the record (kept when newer than the one held)."""


class Follower:
    """One job's record as KV stores it: the newest revision, handed to whoever took it (:meth:`hand_to`)."""

    def __init__(self, tenant: str, job_id: str) -> None:
        self.tenant, self.job_id = tenant, job_id
        self.latest: tuple[JobRecord, int] | None = None
        self.subscription: Subscription | None = None
        self._to: Offer | None = None

    def offer(self, record: JobRecord, revision: int) -> None:
        """Keep ``record`` at ``revision`` when it is newer, and hand it on."""
        if self.latest is None or revision > self.latest[1]:
            self.latest = (record, revision)
            if self._to is not None:
                self._to(record, revision)

    def hand_to(self, offer: Offer) -> None:
        """From now on, hand every newer revision to ``offer`` (the newest so far at once)."""
        self._to = offer
        if self.latest is not None:
            offer(*self.latest)

    async def on_message(self, msg: Msg) -> None:
        """A revision republished by KV ``jobs`` (deletes are no revision of a record)."""
        headers = msg.headers or {}
        if headers.get(KV_OP) or not msg.data or SEQUENCE not in headers:
            return
        try:
            record = JobRecord.model_validate_json(msg.data)
        except ValidationError:
            log.error("KV jobs %s.%s does not hold a job record; ignoring it", self.tenant, self.job_id)
            return
        self.offer(record, int(headers[SEQUENCE]))


class HeldRecords:
    """Starts and ends the subscriptions that follow held jobs' records."""

    def __init__(self, nc: NatsClient, subjects: Subjects, store: JobStore) -> None:
        self.nc, self.subjects, self.store = nc, subjects, store
        self.following: set[Follower] = set()
        self._reconnects = self._reconnected()

    async def follow(self, tenant: str, job_id: str) -> Follower:
        """Follow ``job_id``'s record from now on: call before reading it (on this connection)."""
        follower = Follower(tenant, job_id)
        subject = self.subjects.job_record(tenant, job_id)
        follower.subscription = await self.nc.subscribe(subject, cb=follower.on_message)
        self.following.add(follower)
        return follower

    async def read(self, follower: Follower) -> tuple[JobRecord | None, int | None]:
        """The record as KV holds it now (offered to the follower too)."""
        record, revision = await self.store.get(follower.tenant, follower.job_id)
        if record is not None and revision is not None:
            follower.offer(record, revision)
        return record, revision

    async def stop(self, follower: Follower) -> None:
        """Stop following (the subscription is ended; a failure to say so is logged)."""
        self.following.discard(follower)
        subscription, follower.subscription = follower.subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def refresh(self) -> int:
        """After a reconnect, read every followed record again (what was republished meanwhile is
        lost to the subscriptions); how many were read."""
        reconnects = self._reconnected()
        if reconnects == self._reconnects:
            return 0
        read, failed = 0, False
        for follower in list(self.following):
            try:
                await self.read(follower)
                read += 1
            except Exception:  # noqa: BLE001 - still away: the next refresh reads them again
                failed = True
        if not failed:
            self._reconnects = reconnects
        return read

    def _reconnected(self) -> int:
        return int(self.nc.stats.get("reconnects", 0))
