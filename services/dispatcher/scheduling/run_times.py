"""The observed run times of each kind (KV ``dispatch_runtimes``, key: the kind): the moving median a
job's ETA comes from (:mod:`~services.dispatcher.scheduling.positions`), written by the tallies of
ended attempts (:mod:`~services.dispatcher.scheduling.tallies`)."""

from __future__ import annotations

import statistics
import time

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.nats.kv_watch import KvWatch
from services.common.nats.kv_writes import kv_write
from services.dispatcher.store import CAS_ATTEMPTS

ALL_SIZES = "all"
MIN_SAMPLES = 3
"""Fewer run times than this in a size class: the kind's median over all sizes is used."""
CACHE_S = 1.0
"""How long run times read from KV are kept where the watched view cannot answer."""
SNAPSHOT_TIMEOUT_S = 5.0
"""How long :meth:`RunTimes.start` waits for the kinds' current run times."""


def size_class(input_bytes: int | None) -> str:
    """``s{n}`` for inputs of 4ⁿ to 4ⁿ⁺¹ bytes; ``unknown`` when not known (URL inputs)."""
    if input_bytes is None:
        return "unknown"
    return f"s{max(0, input_bytes.bit_length() - 1) // 2}"


class RunTimesDoc(BaseModel):
    """One kind's latest run times (seconds) per size class, ``all`` included."""

    model_config = ConfigDict(extra="forbid")

    by_size: dict[str, list[float]] = Field(default_factory=dict)


class RunTimes:
    """The observed run times of each kind in KV ``dispatch_runtimes`` (key: the kind), the latest
    ``window`` per size class.

    Once started it watches the bucket (a key per kind): a job's ETA and its run's tally read nothing
    (two message gets a job before: issue 34), and the tally's compare-and-set starts from the watched
    revision (a conflict reads KV). Not started, or its watch failed: read through a short cache.
    """

    def __init__(self, kv: KeyValue, window: int) -> None:
        self.kv, self.window = kv, window
        self._cache: dict[str, tuple[float, RunTimesDoc]] = {}
        self._known: dict[str, tuple[RunTimesDoc, int]] = {}
        self._watch = KvWatch(kv, self._on_entry, name="runtimes-watcher")
        self.reads = 0
        """Run times read from KV (no watched view, a cache miss, or a lost compare-and-set)."""

    async def start(self) -> None:
        """Watch the bucket; without the watch, run times are read as before."""
        await self._watch.start_or_go_without(SNAPSHOT_TIMEOUT_S, "run times are read per job")

    async def stop(self) -> None:
        """Stop watching."""
        await self._watch.stop()

    async def caught_up(self, js: JetStreamContext, bucket: str, timeout_s: float = 5.0) -> None:
        """Wait until every run time written to ``bucket`` (the watched one) so far is in the view."""
        await self._watch.caught_up(js, bucket, timeout_s)

    def _on_entry(self, entry: KeyValue.Entry, initial: bool) -> None:
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self._known.pop(entry.key, None)
            return
        try:
            doc = RunTimesDoc.model_validate_json(entry.value)
        except ValidationError:  # left out: no ETA from it, and a tally's write reads it (and fails as before)
            self._known.pop(entry.key, None)
            return
        self._remember(entry.key, doc, entry.revision or 0)

    def _remember(self, kind: str, doc: RunTimesDoc, revision: int) -> None:
        known = self._known.get(kind)
        if known is None or revision > known[1]:
            self._known[kind] = (doc, revision)

    async def observe(self, kind: str, runs: list[tuple[str, float]]) -> None:
        """Add successful runs' times, each ``(size class, seconds)`` (compare-and-set, re-applied on a conflict)."""
        for attempt in range(CAS_ATTEMPTS):
            doc, revision = self._viewed(kind) if attempt == 0 and self._watch.watching else await self._read(kind)
            for size, seconds in runs:
                for key in {size, ALL_SIZES}:
                    doc.by_size[key] = [*doc.by_size.get(key, []), round(seconds, 3)][-self.window :]
            written = await kv_write(self.kv, kind, doc.model_dump_json().encode(), revision)
            if written is None:
                continue
            self._cache[kind] = (time.monotonic(), doc)
            if self._watch.watching:
                self._remember(kind, doc, written)
            return

    async def median(self, kind: str, size: str) -> float | None:
        """The moving median for ``kind`` and ``size`` (all sizes when that class has few); ``None``
        before any run."""
        if self._watch.watching:  # a kind the view lacks has no run yet (or an invalid doc: no ETA)
            doc = self._known[kind][0] if kind in self._known else RunTimesDoc()
        else:
            cached = self._cache.get(kind)
            if cached is None or time.monotonic() - cached[0] > CACHE_S:
                cached = self._cache[kind] = (time.monotonic(), (await self._read(kind))[0])
            doc = cached[1]
        runs = doc.by_size.get(size, [])
        runs = runs if len(runs) >= MIN_SAMPLES else doc.by_size.get(ALL_SIZES, [])
        return statistics.median(runs) if runs else None

    def _viewed(self, kind: str) -> tuple[RunTimesDoc, int | None]:
        """``kind``'s run times as the watch has them (a copy: the caller changes it), ``None``: no key."""
        known = self._known.get(kind)
        return (known[0].model_copy(deep=True), known[1]) if known is not None else (RunTimesDoc(), None)

    async def _read(self, kind: str) -> tuple[RunTimesDoc, int | None]:
        self.reads += 1
        try:
            got = await self.kv.get(kind)
        except KeyNotFoundError:
            return RunTimesDoc(), None
        return RunTimesDoc.model_validate_json(got.value or b"{}"), got.revision
