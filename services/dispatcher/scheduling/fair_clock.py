"""Each kind's SFQ clock (KV ``dispatch_fair``, one key per kind) as this replica knows it.

A claim picks by the clock (:mod:`services.dispatcher.scheduling.fair`) and then moves it by compare-and-set.
Reading the clock from KV on every claim put a round trip on the way to each start; instead a KV
watch keeps the latest state of every kind here, and this replica's own writes update it at once.
The view is a hint, never trusted for a write: a compare-and-set on a revision that is no longer the
latest fails, and :meth:`FairClocks.charge` reads KV and applies the start again, as a concurrent
claim of another replica always made it do. A watch that is lost (a restarted server) leaves the
view behind; the writes correct it, one failed compare-and-set each.

A start of a tenant that runs alone (the clock holds only its finish tag, one start past ``v``) is
not written at all: it would move every tag by the same amount, which changes no decision (SFQ compares
tags), so a lone tenant's jobs cost no clock write. Taken from a view that missed another replica's
start of another tenant, the skip loses the start: the lone tenant gets one start more than its
share, once per such race.

A claim does not wait for its start to be written: :meth:`FairClocks.charge_soon` writes it in the
background, after this replica's earlier starts of the kind and on the latest clock it knows (as a
lost compare-and-set does anyway), so a decision made meanwhile sees the clock up to a start behind.
"""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import ValidationError

from services.common.nats.connection import log_failure
from services.common.nats.kv_watch import KvWatch
from services.common.nats.kv_writes import kv_write
from services.dispatcher.scheduling.fair import FairState
from services.dispatcher.store import CAS_ATTEMPTS

log = logging.getLogger(__name__)
SNAPSHOT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
"""How long a stop waits for the starts still being written."""


class FairClocks:
    """The SFQ clock of each kind: read from a watched view, moved by compare-and-set in KV."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._known: dict[str, tuple[FairState, int]] = {}
        self._watch = KvWatch(kv, self._on_entry, name="dispatch-fair-watcher")
        self.reads = 0
        """Clocks read from KV (not in the view, or a compare-and-set that lost)."""
        self.unwritten = 0
        """Starts not written: each only shifted the clock (:meth:`FairState.only_shifted_by`)."""
        self._charging: dict[str, asyncio.Task[None]] = {}
        """Each kind's latest start being written in the background (each waits for the one before)."""

    async def start(self) -> None:
        """Watch the bucket (its current clocks first)."""
        await self._watch.start(SNAPSHOT_TIMEOUT_S)

    async def stop(self) -> None:
        """Let the starts still being written finish (for up to :data:`STOP_TIMEOUT_S`), stop watching."""
        await self.settled(STOP_TIMEOUT_S)
        for task in self._charging.values():
            task.cancel()
        await self._watch.stop()

    async def settled(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s``) until every start :meth:`charge_soon` was given is written."""
        pending = set(self._charging.values())
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    async def caught_up(self, js: JetStreamContext, bucket: str, timeout_s: float = 5.0) -> None:
        """Wait until every start written to ``bucket`` (the watched one) so far is in the view."""
        await self._watch.caught_up(js, bucket, timeout_s)

    async def state(self, kind: str) -> tuple[FairState, int | None]:
        """``kind``'s clock and its revision (``None``: no start yet), from the view when it has it."""
        known = self._known.get(kind)
        return known if known is not None else await self._read(kind)

    async def charge(self, kind: str, tenant: str, weight: float, state: FairState, revision: int | None) -> None:
        """Advance ``kind``'s clock by one start of ``tenant`` from ``state`` at ``revision`` (read
        from KV and applied again when that is not the latest); not written when it would only shift
        the clock (a tenant running alone)."""
        for _ in range(CAS_ATTEMPTS):
            if state.only_shifted_by(tenant, weight):
                self.unwritten += 1
                return
            charged = state.charged(tenant, weight)
            written = await kv_write(self.kv, kind, charged.model_dump_json().encode(), revision)
            if written is None:
                state, revision = await self._read(kind)
                continue
            self._learn(kind, charged, written)
            return
        log.warning("fair-share clock of %s not advanced: too many concurrent updates", kind)

    def charge_soon(self, kind: str, tenant: str, weight: float) -> None:
        """Advance ``kind``'s clock by one start of ``tenant`` in the background: after this replica's
        earlier starts of the kind, on the latest clock it knows (failures are logged)."""
        task = asyncio.create_task(self._charge_after(self._charging.get(kind), kind, tenant, weight))
        self._charging[kind] = task
        task.add_done_callback(lambda done: self._written(kind, done))

    def _written(self, kind: str, task: asyncio.Task[None]) -> None:
        if self._charging.get(kind) is task:  # the kind's latest: nothing of it is being written
            del self._charging[kind]

    async def _charge_after(self, before: asyncio.Task[None] | None, kind: str, tenant: str, weight: float) -> None:
        if before is not None:
            await asyncio.wait({before})
        try:
            await self.charge(kind, tenant, weight, *(await self.state(kind)))
        except Exception as exc:  # noqa: BLE001 - the clock lags one start; the next write corrects it
            log_failure(log, exc, "fair-share clock of %s not advanced for a start of %s", kind, tenant)

    async def _read(self, kind: str) -> tuple[FairState, int | None]:
        self.reads += 1
        try:
            got = await self.kv.get(kind)
        except KeyNotFoundError:
            return FairState(), None
        state = FairState.model_validate_json(got.value or b"{}")
        self._learn(kind, state, got.revision or 0)
        return state, got.revision

    def _on_entry(self, entry: KeyValue.Entry, initial: bool) -> None:
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            self._known.pop(entry.key, None)
            return
        try:
            state = FairState.model_validate_json(entry.value)
        except ValidationError:
            log.error("KV dispatch_fair %s holds no fair-share clock; ignoring it", entry.key)
            return
        self._learn(entry.key, state, entry.revision or 0)

    def _learn(self, kind: str, state: FairState, revision: int) -> None:
        known = self._known.get(kind)
        if known is None or known[1] < revision:
            self._known[kind] = (state, revision)
