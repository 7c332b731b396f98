"""The queue index: one KV ``dispatch_queue`` entry per attempt waiting for (or holding) a slot.

An entry is a :class:`~services.dispatcher.scheduling.queue_entries.QueueEntry`. The fold's reaction to
``job.queued`` / ``job.retrying`` creates the entry (``create``: a redelivered event changes
nothing), then publishes the attempt's dispatch ticket. A ticket is a *slot token*: whoever holds
one claims an entry by compare-and-set (``claimed_by`` = the ticket's stream sequence), so every
entry is claimed by exactly one token, across replicas. The holder deletes the entry when the
attempt ends, before it acks the token.

Each replica mirrors the bucket in memory through a KV watch (:class:`QueueIndex`), so a decision
reads no KV but the entry it claims; a claim that fails (the entry was claimed or dropped by another
token) leaves the mirror to the watch, and a token that finds nothing in the mirror re-reads its kind
from KV before it gives up, unless the watch has brought every write the bucket held then (its last
sequence; waited for up to :data:`WATCH_LAG_S`): a listing would read that again (issue 34: a
consumer and every entry of the kind, about one job in five with 2 replicas). The mirror keeps each
tenant's unclaimed entries in start order (:mod:`~services.dispatcher.scheduling.lines`) and the
claimed ones apart, so a decision or a queue position costs no scan of the whole queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from services.common.nats.connection import log_failure
from services.common.nats.kv import kv_entries
from services.common.nats.kv_writes import kv_create, kv_delete, kv_update
from services.common.nats.quiet_watch import watch_keys
from services.dispatcher.scheduling.lines import Order, WaitingLines, line_order
from services.dispatcher.scheduling.queue_entries import QueueEntry

log = logging.getLogger(__name__)
WATCH_LAG_S = 0.25
"""How long a re-read waits for the watch to bring the writes the bucket held, before it lists the kind."""


class QueueIndex:
    """KV ``dispatch_queue`` and this replica's mirror of it, by kind."""

    def __init__(self, kv: KeyValue, order: Order | None = None) -> None:
        self.kv = kv
        self.by_kind: dict[str, dict[str, tuple[QueueEntry, int]]] = defaultdict(dict)
        self.lines: WaitingLines[QueueEntry] = WaitingLines(order or line_order())
        """The unclaimed entries, by kind and tenant, in start order."""
        self._claimed: dict[str, dict[str, QueueEntry]] = defaultdict(dict)
        """The claimed entries, by kind and key."""
        self.changed = asyncio.Event()
        self._rereads: dict[str, list[dict[str, float]]] = defaultdict(list)
        """Per kind, one map per re-read under way: the keys deleted meanwhile, at which revision
        (``inf``: not known)."""
        self.watched = 0
        """The stream sequence of the latest write the watch (:meth:`follow`) brought into the mirror."""

    async def enqueue(self, entry: QueueEntry) -> bool:
        """Create ``entry``; ``False`` (and left as it is) when it exists: a redelivered reaction."""
        try:
            revision = await kv_create(self.kv, entry.key, entry.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            return False
        self._remember(entry, revision)
        return True

    async def remove(self, entry_or_key: QueueEntry | str, revision: int | None = None) -> bool:
        """Delete an entry (only at ``revision`` when given); ``False`` when it moved on."""
        key = entry_or_key if isinstance(entry_or_key, str) else entry_or_key.key
        try:
            if revision is None:
                await self.kv.delete(key)
            else:
                await kv_delete(self.kv, key, revision)
        except KeyWrongLastSequenceError:
            return False
        self._forget(key)
        return True

    async def claim(self, entry: QueueEntry, revision: int, seq: int) -> tuple[QueueEntry, int] | None:
        """Mark ``entry`` held by token ``seq`` if it is still at ``revision``; the claimed entry."""
        claimed = entry.model_copy(update={"claimed_by": seq})
        try:
            new_revision = await kv_update(self.kv, entry.key, claimed.model_dump_json().encode(), revision)
        except KeyWrongLastSequenceError:  # claimed or dropped by another: the watch brings it
            return None
        self._remember(claimed, new_revision)
        return claimed, new_revision

    async def unclaim(self, entry: QueueEntry, revision: int) -> bool:
        """Write ``entry`` back unclaimed if it is still at ``revision``; ``False`` when it moved on."""
        unclaimed = entry.model_copy(update={"claimed_by": None})
        try:
            new_revision = await kv_update(self.kv, entry.key, unclaimed.model_dump_json().encode(), revision)
        except KeyWrongLastSequenceError:
            return False
        self._remember(unclaimed, new_revision)
        return True

    async def until_due(self, key: str, within_s: float) -> bool:
        """Whether the entry ``key`` waits unclaimed in the mirror and is due within ``within_s``: waits for
        its write to come (the watch, or this replica's own) and then for its ``not_before``."""
        deadline = time.monotonic() + within_s
        while True:
            self.changed.clear()
            found = self._held(key)
            if found is not None and found[0].claimed_by is None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.changed.wait()
        due_in = found[0].not_before - time.time()
        if due_in > deadline - time.monotonic():
            return False
        await asyncio.sleep(max(0.0, due_in))
        return True

    def entries(self, kind: str) -> list[tuple[QueueEntry, int]]:
        """The mirror's entries of ``kind``."""
        return list(self.by_kind.get(kind, {}).values())

    def revision(self, key: str) -> int | None:
        """The mirror's revision of ``key``; ``None`` when it holds no such entry."""
        found = self._held(key)
        return None if found is None else found[1]

    def _held(self, key: str) -> tuple[QueueEntry, int] | None:
        """The mirror's entry ``key`` (its kind is the key's first token) with its revision."""
        return self.by_kind.get(key.split(".", 1)[0], {}).get(key)

    def running(self) -> list[QueueEntry]:
        """Every claimed entry (attempts holding a slot), all kinds."""
        return [e for claimed in self._claimed.values() for e in claimed.values()]

    def held_by(self, kind: str, seq: int) -> tuple[QueueEntry, int] | None:
        """The entry token ``seq`` claimed, if any."""
        entry = next((e for e in self._claimed.get(kind, {}).values() if e.claimed_by == seq), None)
        return None if entry is None else self.by_kind[kind][entry.key]

    async def reload(self, key: str) -> None:
        """Re-read one key into the mirror: the bucket leader's (a message get; the buckets have no direct
        gets, which a replica still catching up may answer)."""
        try:
            got = await self.kv.get(key)
        except KeyNotFoundError:
            self._forget(key)
            return
        self._take(key, got.value, got.revision)

    async def reload_kind(self, kind: str) -> None:
        """Re-read every entry of ``kind`` into the mirror (it may lag the bucket). What the mirror
        learned while the listing was read (the watch, this replica's own writes) stays: an entry the
        listing lacks is forgotten only when it was written before the listing began (it was deleted),
        and a listed entry deleted meanwhile is not brought back."""
        before = (await self.kv.status()).stream_info.state.last_seq
        if await self._watched(before):
            return
        deleted: dict[str, float] = {}
        self._rereads[kind].append(deleted)
        try:
            items = await kv_entries(self.kv, f"{kind}.>")
        finally:
            self._rereads[kind].remove(deleted)
        listed = {item.key for item in items}
        mirror = self.by_kind[kind]
        for key in [key for key, (_, revision) in mirror.items() if key not in listed and revision <= before]:
            self._delete(kind, key)
        for item in items:
            if (item.revision or 0) > deleted.get(item.key, -1):
                self._take(item.key, item.value, item.revision)
        self.changed.set()

    async def _watched(self, seq: int) -> bool:
        """Whether the watch brings every write up to stream sequence ``seq`` within :data:`WATCH_LAG_S`."""
        deadline = time.monotonic() + WATCH_LAG_S
        while self.watched < seq:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def follow(self) -> None:
        """Keep the mirror up to date (a KV watch; restarted after an error)."""
        while True:
            try:
                watcher = await watch_keys(self.kv)  # a heartbeat at seconds, anew at a reconnect
                async for update in watcher:
                    if update is None:
                        continue
                    if update.operation in (KV_DEL, KV_PURGE) or not update.value:
                        self._forget(update.key, update.revision)
                    else:
                        self._take(update.key, update.value, update.revision or 0)
                    self.watched = max(self.watched, update.revision or 0)  # in stream order: all before too
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged by log_failure
                log_failure(log, exc, "dispatch_queue watch failed; restarting it")
                await asyncio.sleep(1.0)

    def _take(self, key: str, value: bytes | None, revision: int | None) -> None:
        try:
            entry = QueueEntry.model_validate_json(value or b"")
        except ValueError:
            log.error("KV dispatch_queue %s holds no queue entry; ignoring it", key)
            return
        current = self.by_kind[entry.kind].get(key)
        if current is None or current[1] <= (revision or 0):
            self._remember(entry, revision or 0)

    def _remember(self, entry: QueueEntry, revision: int) -> None:
        self.by_kind[entry.kind][entry.key] = (entry, revision)
        self.lines.place(entry)
        if entry.claimed_by is None:
            self._claimed[entry.kind].pop(entry.key, None)
        else:
            self._claimed[entry.kind][entry.key] = entry
        self.changed.set()

    def _delete(self, kind: str, key: str) -> None:
        del self.by_kind[kind][key]
        self.lines.drop(key)
        self._claimed[kind].pop(key, None)

    def _forget(self, key: str, revision: int | None = None) -> None:
        """Drop ``key`` from the mirror (a delete at ``revision``: not an entry made again after it)."""
        kind = key.split(".", 1)[0]
        entries = self.by_kind.get(kind, {})
        current = entries.get(key)
        if current is not None and (revision is None or current[1] <= revision):
            self._delete(kind, key)
        for deleted in self._rereads.get(kind, ()):
            deleted[key] = max(deleted.get(key, -1), float("inf") if revision is None else revision)
        self.changed.set()
