"""Leases across notifier replicas: one replica at a time runs the fan-out, and each delivery queue.

The webhook order needs one writer: two replicas fanning out different batches would interleave a
job's deliveries in its queue, and two serving one queue would attempt one job's events at once. A
lease is a key in KV ``notifier_leases`` (bucket TTL ``webhook_lease_ttl_s``) created by its holder
and renewed (compare-and-set) every third of the TTL; the holder deletes it when its work ends (for
up to :data:`RELEASE_S`, else it expires). A
replica that dies loses it within the TTL, and another takes the work over (its unacked messages
come back after the ack wait; the delivery's start-up scan keeps their jobs in order). A holder that
fails to renew (another took the lease: it was away longer than the TTL) stops its work at once; one
refused because its own earlier renewal, which timed out, landed after all reads the lease from the
stream's leader and goes on (it stopped its work until the TTL ran out). A holder whose renewals go
unanswered stops its work too, before its key may expire: when its next renewal would come later than
a TTL after the last write known to hold was sent, or when a renewal is still unanswered a tenth of the
TTL before then (:data:`STOP_MARGIN`; nats-py's 5 s request time-out outlasts a short TTL). Another
replica may take the lease from then on, where a holder cut off from the bucket's leader went on
working, and the work ran twice at once (in a netfaults partition both notifiers served one endpoint's
queue for 14 s). A holder that stops so, yet still held the lease, takes it again; its deliveries'
attempts under way end on their own (:meth:`~services.notifier.webhooks.delivery.EndpointDelivery._handle`).

The TTL is 15 s (``webhook_lease_ttl_s``), a renewal every 5 s: each renewal is a write and its reply,
and a 5 s TTL (a renewal every 1.7 s) was a quarter of the idle stack's messages (issue 34: ≤ 5/s at
rest). A dead holder's work thus moves within 15 s; its in-flight deliveries come back only after
``webhook_ack_wait_s`` (60 s) anyway. An existing bucket gets the configured TTL (:func:`open_leases`),
so a renewal period made for a longer TTL never meets a bucket that expires keys sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.streams import KV_NOTIFIER_LEASES
from contracts.subjects import Namespace
from services.common.nats.connection import cancel_and_wait, cancel_requested
from services.common.nats.kv import kv_last
from services.common.nats.kv_writes import kv_create, kv_delete, kv_update

log = logging.getLogger(__name__)
BUCKET = KV_NOTIFIER_LEASES
STOP_MARGIN = 0.1
"""The share of the TTL left when a holder whose renewal is still unanswered stops its work: its key
may expire from a TTL after the last write known to hold was sent, and the work needs a moment to stop."""
RELEASE_S = 2.0
"""How long a holder whose work ended waits for its lease's deletion: one unanswered by then (NATS away or
slow) expires with the TTL, and another replica takes the work then; the holder's stop is not held up
by it (a notifier's SIGTERM stop ran past its 10 s grace on two 5 s KV requests to a loaded server)."""


async def open_leases(js: JetStreamContext, ns: Namespace, ttl_s: float, replicas: int = 1) -> Leases:
    """The leases of this notifier process (the bucket made on first use)."""
    name = ns.bucket(BUCKET)
    try:
        kv = await js.key_value(name)
    except BucketNotFoundError:
        config = KeyValueConfig(
            bucket=name, description="Notifier leases: who runs the fan-out and each delivery queue.",
            history=1, ttl=ttl_s, storage=StorageType.FILE, replicas=replicas,
        )  # fmt: skip
        kv = await js.create_key_value(config)
        return Leases(kv, ttl_s)
    await _expire_after(js, f"KV_{name}", ttl_s)
    return Leases(kv, ttl_s)


async def _expire_after(js: JetStreamContext, stream: str, ttl_s: float) -> None:
    """Give the bucket made by an older notifier (its TTL another) this TTL: keys renewed every third of
    it must not expire sooner. A bucket with a longer TTL is shortened too (a dead holder's work moves
    within ``ttl_s``); the holders of a longer-TTL setting renew more rarely and may lose their leases
    meanwhile, which stops their work until they take the lease again, never runs it twice."""
    config = (await js.stream_info(stream)).config
    if abs((config.max_age or 0.0) - ttl_s) < 1e-3:
        return
    config.max_age = ttl_s
    config.duplicate_window = min(config.duplicate_window or ttl_s, ttl_s)  # the server refuses a longer one
    await js.update_stream(config)
    log.info("KV %s: lease TTL set to %g s", stream, ttl_s)


class Leases:
    """Runs work under a named lease; ``owner`` tells this process apart."""

    def __init__(self, kv: KeyValue, ttl_s: float) -> None:
        self.kv, self.ttl_s, self.owner = kv, ttl_s, uuid.uuid4().hex.encode()

    async def run(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Wait for the lease ``name``, then run ``work`` while holding it (again if the lease is lost)."""
        while True:
            revision, written = await self._acquire(name)
            if cancel_requested():  # stopped while the write's reply came (nats-py kept the reply): no work
                await self._release(name)
                raise asyncio.CancelledError
            task = asyncio.ensure_future(work())
            renew = asyncio.create_task(self._renew(name, revision, written))
            try:
                done, _ = await asyncio.wait({task, renew}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # stopping: hand the lease over at once
                await self._stop(task, renew)
                await self._release(name)
                raise
            await self._stop(task, renew)
            if task in done:
                await self._release(name)
                task.result()  # its error, if it failed
                return
            log.warning("lease %s lost; its work stopped", name)

    @staticmethod
    async def _stop(*tasks: asyncio.Future[Any]) -> None:
        await cancel_and_wait(tasks)

    async def _acquire(self, name: str) -> tuple[int, float]:
        """The lease's revision once this replica holds it, and when the write that holds it was sent.

        A write answered more than a third of the TTL after it was sent is confirmed by a renewal at once
        before the work starts: its key may expire soon after the answer (its TTL counts from when it was
        stored, at most the send), and the first renewal would find the lease past its bound and stop the
        work it had just started (in a netfaults partition, "unconfirmed for 6.0 s")."""
        while True:
            if cancel_requested():  # a write's reply came with the stop: the stop wins
                raise asyncio.CancelledError
            sent, revision = time.monotonic(), None
            try:
                revision = await kv_create(self.kv, name, self.owner)
            except KeyWrongLastSequenceError:  # held by another replica: it expires within the TTL if that one died
                with contextlib.suppress(KeyWrongLastSequenceError, nats.errors.Error, TimeoutError):
                    if (mine := await self._mine(name)) is not None:  # by this one: an earlier write landed
                        sent = time.monotonic()  # renewed at once: when that write was stored is not known
                        revision = await kv_update(self.kv, name, self.owner, mine)
            except (nats.errors.Error, TimeoutError) as exc:
                log.debug("lease %s: %r", name, exc)
            if revision is not None:
                if (answered_after := time.monotonic() - sent) <= self.ttl_s / 3:
                    return revision, sent
                log.warning(
                    "lease %s written, answered after %.1f s; renewed before its work starts", name, answered_after
                )
                continue  # the key is this replica's, or expired: either way the next write holds it
            await asyncio.sleep(self.ttl_s / 3)

    async def _renew(self, name: str, revision: int, written: float) -> int:
        """Renew until the lease is lost, then return: another holds it, or no renewal has been confirmed
        for so long that the key may expire before the next (``written``: when the last write known to
        hold was sent, a lower bound of when the server stored it and its TTL began)."""
        unanswered: float | None = None  # the first renewal since ``written`` that may have landed unanswered
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            sent = time.monotonic()
            held_until = written + self.ttl_s * (1 - STOP_MARGIN)  # answered by then, or the work stops
            try:  # a later answer may come after another replica took the lease
                async with asyncio.timeout(max(0.0, held_until - sent)):
                    revision, written, unanswered = await kv_update(self.kv, name, self.owner, revision), sent, None
            except KeyWrongLastSequenceError:
                try:
                    async with asyncio.timeout(max(0.0, held_until - time.monotonic())):
                        mine = await self._mine(name)
                except (nats.errors.Error, TimeoutError):
                    mine = None  # not known: taken as lost
                if mine is None:
                    return revision
                revision = mine  # a renewal that timed out landed after all: the lease is still this one's
                written, unanswered = unanswered if unanswered is not None else written, None
            except (nats.errors.Error, TimeoutError) as exc:
                unanswered = sent if unanswered is None else unanswered
                unconfirmed = time.monotonic() - written
                if unconfirmed + self.ttl_s / 3 >= self.ttl_s:  # the next try may come after the key expired
                    log.warning("lease %s unconfirmed for %.1f s (%r); its work stops", name, unconfirmed, exc)
                    return revision
                log.warning("lease %s not renewed: %r", name, exc)
            if cancel_requested():  # stopped while the reply came: nats-py's request kept the reply
                raise asyncio.CancelledError

    async def _mine(self, name: str) -> int | None:
        """The revision of ``name`` while it holds this replica's lease, else ``None`` (the owner value is
        this process's own; read from the stream's leader, as a lagging replica could still show a lease
        another has taken since)."""
        entry = await kv_last(self.kv, name)
        return entry.revision if entry is not None and entry.value == self.owner else None

    async def _release(self, name: str) -> None:
        """Delete the lease while it is this replica's, for up to :data:`RELEASE_S`; else it expires."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(RELEASE_S):
                entry = await self.kv.get(name)
                if entry.value == self.owner and entry.revision is not None:
                    await kv_delete(self.kv, name, entry.revision)
