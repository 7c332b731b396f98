"""One watcher of a KV bucket, the base of every in-memory view kept true by KV changes; and the bounded
wait for a job's record to reach a state (:func:`latest_record`).

:class:`KvWatch` reads the bucket's current entries (the snapshot), then every change, and hands
each entry to its owner (``on_entry(entry, initial)``, ``initial`` while the snapshot is read).
It tracks the last revision seen, so a caller can wait until every write made so far has reached
it (:meth:`KvWatch.caught_up`). The key cache (:mod:`services.common.auth.key_cache`) and the
notifier's webhook endpoints (:mod:`services.notifier.webhooks.targets`) are built on it.

The watch is an ordered consumer in the server's memory (:func:`~services.common.nats.quiet_watch.watch_keys`:
a heartbeat every 15 s, not nats-py's 5 s): a restarted server loses it, and the watch makes it anew
at the reconnect; the death of the cluster node holding it is noticed after two missed heartbeats
(30 s), meanwhile the watch is blind. So :meth:`KvWatch.caught_up` raises ``TimeoutError`` rather than let
a caller act on a stale view, and starts a fresh watch, which hands on only the entries newer than
the last revision seen (a key changed or deleted meanwhile arrives as a change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import nats.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.ids import tenant_key
from contracts.job_record import JobRecord
from contracts.record_repair import UnreadableRecordError, read_record
from services.common.nats.connection import cancel_and_wait
from services.common.nats.publish import until_answered
from services.common.nats.quiet_watch import watch_keys

log = logging.getLogger(__name__)

UPDATE_WAIT_S = 60.0
"""How long one wait for the next entry lasts before the watcher waits again."""

OnEntry = Callable[[KeyValue.Entry, bool], None]
"""Called with each entry and whether it belongs to the initial snapshot."""


class KvWatch:
    """A running watch of one KV bucket (all keys), feeding ``on_entry``."""

    def __init__(self, kv: KeyValue, on_entry: OnEntry, *, meta_only: bool = False, name: str = "kv-watch") -> None:
        self.kv, self.on_entry, self.meta_only, self.name = kv, on_entry, meta_only, name
        self.revision = 0
        """The highest revision seen (0 before any entry)."""
        self.snapshot_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    @property
    def watching(self) -> bool:
        """Whether the snapshot is read and the watch still runs: every change reaches ``on_entry``."""
        return self.snapshot_done.is_set() and self._task is not None and not self._task.done()

    async def start(self, snapshot_timeout_s: float) -> None:
        """Start watching; wait up to ``snapshot_timeout_s`` for the snapshot (``TimeoutError`` after). A watch
        that NATS does not answer in time (a loaded or failing-over server: a dispatcher's start failed so in
        CI, its fair clocks' consumer info unanswered) is made again meanwhile: nats-py drops a watch that
        failed, and a consumer made late, with nothing subscribed to it, is deleted when it goes idle."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + snapshot_timeout_s
        watcher = await until_answered(
            lambda: watch_keys(self.kv, meta_only=self.meta_only), f"{self.name} start", snapshot_timeout_s
        )
        self._task = asyncio.create_task(self._watch(watcher), name=self.name)
        await asyncio.wait_for(self.snapshot_done.wait(), max(0.0, deadline - loop.time()))

    async def start_or_go_without(self, snapshot_timeout_s: float, without: str) -> None:
        """:meth:`start` for a view that only saves reads: a watch that cannot start is logged (``without``:
        what its owner does instead), not raised."""
        try:
            await self.start(snapshot_timeout_s)
        except Exception as exc:  # noqa: BLE001 - the owner answers without the view
            log.warning("%s did not start (%r): %s", self.name, exc, without)

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def caught_up(self, js: JetStreamContext, bucket: str, timeout_s: float = 5.0) -> None:
        """Wait (at most ``timeout_s``) until every write made to ``bucket`` (the watched one) was seen.

        ``TimeoutError`` when one was not: the watch is started anew (it may have been lost with a
        restarted server), so a later call can succeed.
        """
        info = await js.stream_info(f"KV_{bucket}")
        last = info.state.last_seq
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.revision >= last), timeout_s)
        except TimeoutError:
            log.warning("%s missed KV writes (seen %d of %d); watching anew", self.name, self.revision, last)
            await self._rewatch()
            raise

    async def _rewatch(self) -> None:
        """Replace the watch with a fresh one (the snapshot's entries up to :attr:`revision` are skipped)."""
        if self._task is None or not self.snapshot_done.is_set():
            return
        await self.stop()
        watcher = await watch_keys(self.kv, meta_only=self.meta_only)
        self._task = asyncio.create_task(self._watch(watcher), name=self.name)

    async def _watch(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=UPDATE_WAIT_S)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    continue
                if entry is None:  # the end of the snapshot: from here on, entries are changes
                    self.snapshot_done.set()
                    continue
                if self.snapshot_done.is_set() and (entry.revision or 0) <= self.revision:
                    continue  # a fresh watch's snapshot: seen already
                self.revision = max(self.revision, entry.revision or 0)
                self.on_entry(entry, not self.snapshot_done.is_set())
                async with self._changed:
                    self._changed.notify_all()
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]


async def latest_record(
    kv: KeyValue, tenant: str, job_id: str, done: Callable[[JobRecord], bool], timeout_s: float
) -> JobRecord | None:
    """The job's record as soon as ``done(record)`` holds; after ``timeout_s`` the last one seen
    (which does not satisfy ``done``), or ``None`` when the job has no record. A revision that does
    not validate is passed over. A watch of the one key, no polling: the owner of the gateway's reads
    that must not answer from a record older than an event already seen (the dashboard's panels, the
    seed's ``/stop-training``) and of the tests that wait on a record."""
    record: JobRecord | None = None
    watcher = await kv.watch(tenant_key(tenant, job_id))
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                async for entry in watcher:
                    if entry is not None and entry.value:
                        try:
                            record = read_record(entry.value)
                        except UnreadableRecordError as exc:  # the dispatcher may write a readable one next
                            log.warning("job %s: %s", job_id, exc, extra={"job_id": job_id})
                            continue
                        if done(record):
                            return record
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return record
