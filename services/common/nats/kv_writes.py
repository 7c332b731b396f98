"""Compare-and-set writes of a KV key: :func:`kv_create`, :func:`kv_update` and :func:`kv_delete`, and
:func:`kv_write` (a create or an update) on them. Every compare-and-set in the services goes through
them, not nats-py's ``kv.update(last=...)`` and ``kv.delete(last=...)`` (a test holds that).

On a clustered bucket the key's leader refuses a write while another write of the key is in flight
(JetStream 10164: proposed, not yet applied); nats-py reads that as a conflict, and a lost create's
re-read as ``KeyNotFoundError``. Here such a create is made again after a moment, and such a write is
sent again after a pause, then raises :class:`WriteInFlight`, a time-out: a leader without its quorum
keeps the other write in flight for good, and a loop that read each refusal as a conflict spent its
tries at once.
"""

from __future__ import annotations

import asyncio

from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_OP, KeyValue

from services.common.nats.publish import EXPECTED_LAST, WRONG_LAST_SEQUENCE, WRONG_LAST_SEQUENCE_IN_FLIGHT

CREATE_TRIES = 5
"""How many times :func:`kv_create` creates again a key that another write is taking right then."""
IN_FLIGHT_TRIES = 8
"""How many times :func:`kv_update` sends a write refused while another write of its key is in flight,
waiting twice as long between tries (the last 1.27 s after the first): a racing write on a loaded
machine can take more than 75 ms to apply (3 of 180 racing creates here), one kept by a leader without
its quorum stays."""


def in_flight_pause_s(refusals: int) -> float:
    """The wait before a write is sent again after its ``refusals``-th refusal while another write of its
    key (or subject) was in flight: 10 ms, then twice as long each time."""
    return 0.005 * float(2**refusals)


class WriteInFlight(TimeoutError):
    """A compare-and-set that the key's leader refused each time while another write of the key was in
    flight (JetStream 10164: proposed, not yet applied). Whether it holds cannot be told until that write
    is applied, which a leader that lost its quorum does not do: an earlier write of the caller's own
    that timed out stays in flight so, and the key reads as it was. Not a conflict, then, but the
    infrastructure's failure, retried as a time-out is."""


async def kv_create(kv: KeyValue, key: str, value: bytes) -> int:
    """``kv.create``: ``key`` made with ``value`` (its revision) unless it holds a value, else
    ``KeyWrongLastSequenceError``. On a clustered bucket a create that loses to another write still in
    flight (proposed, not yet applied on the leader) is refused, and nats-py's re-read of the key (to
    tell a deleted key, which it makes again) finds nothing yet: it raised ``KeyNotFoundError``, which
    no caller expects of a lost create. Such a create is made again, after a moment."""
    for attempt in range(1, CREATE_TRIES + 1):
        try:
            return int(await kv.create(key, value))
        except KeyNotFoundError:
            await asyncio.sleep(0.005 * attempt)
    raise KeyWrongLastSequenceError(description=f"{key} was being written each time it was created")


async def kv_update(kv: KeyValue, key: str, value: bytes, revision: int) -> int:
    """``kv.update``: ``value`` written under ``key`` if the key is still at ``revision`` (the new
    revision), else ``KeyWrongLastSequenceError``. nats-py reads a refusal while another write of the
    key is in flight (10164) as that conflict too, and a compare-and-set loop then reads the key
    unchanged and is refused again at once: a leader without its quorum, holding a write of the loop's
    own that timed out, turns every try into a conflict within milliseconds (the likely course of a
    netfaults run whose fold had one write refused 50 times in a row). Such a write is sent again after
    a moment, and :class:`WriteInFlight` when it stays refused."""
    return await _fenced(kv, key, value, {EXPECTED_LAST: str(revision)})


async def kv_delete(kv: KeyValue, key: str, revision: int) -> None:
    """``kv.delete(key, last=revision)``: ``key`` deleted if it is still at ``revision``, else
    ``KeyWrongLastSequenceError`` (nats-py: a bare 400, a refusal in flight too); a refusal while
    another write of the key is in flight is sent again, as :func:`kv_update` does."""
    await _fenced(kv, key, b"", {KV_OP: KV_DEL, EXPECTED_LAST: str(revision)})


async def _fenced(kv: KeyValue, key: str, value: bytes, headers: dict[str, str]) -> int:
    """Publish ``value`` under ``key`` with the expected-last ``headers``: its stream sequence."""
    for attempt in range(IN_FLIGHT_TRIES):
        if attempt:
            await asyncio.sleep(in_flight_pause_s(attempt))
        try:
            ack = await kv._js.publish(f"{kv._pre}{key}", value, headers=headers)
            return int(ack.seq)
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise KeyWrongLastSequenceError(description=exc.description) from exc
            if exc.err_code != WRONG_LAST_SEQUENCE_IN_FLIGHT:
                raise
    raise WriteInFlight(f"{key}: another write of it stayed in flight each time it was written")


async def kv_write(kv: KeyValue, key: str, value: bytes, revision: int | None) -> int | None:
    """Write ``value`` under ``key`` if the key is still at ``revision`` (``None``: no value yet), the
    compare-and-set every read-modify-write here makes; the new revision, ``None`` when another write
    came first (read again and apply again); :class:`WriteInFlight` when that cannot be told."""
    try:
        if revision is None:
            return await kv_create(kv, key, value)
        return await kv_update(kv, key, value, revision)
    except KeyWrongLastSequenceError:
        return None
