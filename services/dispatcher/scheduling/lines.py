"""Each tenant's line of waiting attempts, per kind, kept in start order as the queue index changes.

A decision (:mod:`~services.dispatcher.scheduling.scheduler`) needs the head of each tenant's line of a kind,
and a job's queue position (:mod:`~services.dispatcher.scheduling.positions`) its place in its line: the
tenant's unclaimed entries in the order they would start (:func:`line_order`). Sorting a kind's
entries for each decision would cost in proportion to everything queued; kept sorted
(``sortedcontainers``), a decision reads a few heads and a position is a bisection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

from sortedcontainers import SortedKeyList

from services.dispatcher.scheduling.fair import ageing_order


class Lined(Protocol):
    """What a line needs of a queue entry (:class:`services.dispatcher.scheduling.queue_entries.QueueEntry`)."""

    @property
    def key(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def enqueued_at(self) -> float: ...
    @property
    def claimed_by(self) -> int | None: ...


Order = Callable[[Lined], tuple[float, float]]
"""An entry's place in its tenant's line (smaller first)."""
Entry = TypeVar("Entry", bound=Lined)


def line_order(policy: str = "fair", ageing_s: float = 60.0) -> Order:
    """The line's order: submission time less ``priority × ageing_s`` (fair share: linear ageing,
    :func:`~services.dispatcher.scheduling.fair.ageing_order`), or submission time alone (``fifo``)."""
    if policy == "fifo":
        return lambda entry: (entry.enqueued_at, entry.enqueued_at)
    return lambda entry: ageing_order(entry.enqueued_at, entry.priority, ageing_s)


class WaitingLines(Generic[Entry]):
    """The unclaimed entries of each kind and tenant, each line sorted by ``order`` (then key)."""

    def __init__(self, order: Order) -> None:
        self.order = order
        self._lines: dict[str, dict[str, SortedKeyList]] = {}
        self._placed: dict[str, Entry] = {}
        """Every entry in a line, by key, as it was placed (its sort key finds it again)."""

    def place(self, entry: Entry) -> None:
        """Put ``entry`` (its latest state) in its line, or take it out when it is claimed."""
        self.drop(entry.key)
        if entry.claimed_by is not None:
            return
        line = self._lines.setdefault(entry.kind, {}).get(entry.tenant)
        if line is None:
            line = self._lines[entry.kind][entry.tenant] = SortedKeyList(key=self.sort_key)
        line.add(entry)
        self._placed[entry.key] = entry

    def drop(self, key: str) -> None:
        """Take the entry ``key`` out of its line (nothing if it is in none)."""
        placed = self._placed.pop(key, None)
        if placed is None:
            return
        lines = self._lines[placed.kind]
        lines[placed.tenant].remove(placed)
        if not lines[placed.tenant]:
            del lines[placed.tenant]

    def tenants(self, kind: str) -> list[str]:
        """The tenants with a waiting entry of ``kind``."""
        return list(self._lines.get(kind, {}))

    def line(self, kind: str, tenant: str) -> Iterator[Entry]:
        """``tenant``'s waiting entries of ``kind``, first to start first."""
        return iter(self._lines.get(kind, {}).get(tenant, ()))

    def length(self, kind: str, tenant: str) -> int:
        """How many entries wait in ``tenant``'s line of ``kind``."""
        return len(self._lines.get(kind, {}).get(tenant, ()))

    def position(self, key: str) -> int | None:
        """The 1-based place of the entry ``key`` in its line; ``None`` when it waits in none."""
        placed = self._placed.get(key)
        if placed is None:
            return None
        return int(self._lines[placed.kind][placed.tenant].index(placed)) + 1

    def place_of(self, entry: Entry) -> int:
        """The 1-based place ``entry`` has in its line, or would have once placed."""
        if (placed := self.position(entry.key)) is not None:
            return placed
        line = self._lines.get(entry.kind, {}).get(entry.tenant)
        return 1 + (int(line.bisect_key_left(self.sort_key(entry))) if line is not None else 0)

    def sort_key(self, entry: Entry) -> tuple[float, float, str]:
        """Where ``entry`` sorts in its tenant's line (smaller first)."""
        return (*self.order(entry), entry.key)
