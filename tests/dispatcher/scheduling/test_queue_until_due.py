""":meth:`QueueIndex.until_due`, on the mirror alone: how a lost session's slot waits for its resume
(:meth:`~services.dispatcher.running.attempts.Attempts._keep_slot_for_resume`)."""

from __future__ import annotations

import asyncio
import time

from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.queue_entries import QueueEntry


def _entry(not_before: float = 0.0, claimed_by: int | None = None) -> QueueEntry:
    return QueueEntry(
        tenant="acme", job_id="job_1", kind="splat", attempt=2, enqueued_at=time.time() - 60,
        not_before=not_before, claimed_by=claimed_by,
    )  # fmt: skip


def _write(index: QueueIndex, entry: QueueEntry, revision: int) -> None:
    index._take(entry.key, entry.model_dump_json().encode(), revision)  # as the watch brings a write


async def test_it_waits_for_the_entry_to_come_and_then_for_its_backoff() -> None:
    index = QueueIndex(None)  # type: ignore[arg-type]  # the mirror alone: no KV is touched
    entry = _entry(not_before=time.time() + 0.3)
    asyncio.get_running_loop().call_later(0.1, _write, index, entry, 1)
    assert await index.until_due(entry.key, 10.0)
    assert time.time() >= entry.not_before


async def test_an_entry_that_never_comes_or_is_claimed_or_is_due_too_late_is_not_waited_for() -> None:
    index = QueueIndex(None)  # type: ignore[arg-type]
    key = _entry().key
    assert not await index.until_due(key, 0.2)  # never written
    _write(index, _entry(claimed_by=7), 1)
    assert not await index.until_due(key, 0.2)  # another token claimed it
    _write(index, _entry(not_before=time.time() + 3600), 2)
    began = time.monotonic()
    assert not await index.until_due(key, 5.0)  # due past the bound: not slept on
    assert time.monotonic() - began < 5.0
