"""What a frame sent with an ``Idempotency-Key`` was stored as, and the 503 of a frame not stored.

A keyed frame's ``Nats-Msg-Id`` is its key's (:func:`~contracts.event_ids.frame_key_msg_id`); JetStream
answers a retry within FRAMES' duplicate window with the stream sequence of the first, and the frame
read there gives the seq it was numbered (or shows the key was used with other bytes). Once its session
takes no more, such a retry is sent with a fence nothing passes (:func:`stored_seq`), so only a duplicate
is answered and nothing is stored.
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from contracts.session_feed import H_SEQ
from services.common.http.problem import ProblemError, field_error, unprocessable
from services.common.nats.kv_writes import IN_FLIGHT_TRIES, in_flight_pause_s
from services.common.nats.publish import (
    DUPLICATE_IN_PROCESS,
    EXPECTED_LAST,
    MSG_ID,
    WRONG_LAST_SEQUENCE,
    WRONG_LAST_SEQUENCE_IN_FLIGHT,
)

IN_FLIGHT = frozenset({WRONG_LAST_SEQUENCE_IN_FLIGHT, DUPLICATE_IN_PROCESS})
"""A refusal while an earlier publish is proposed and not yet applied: another frame of the subject, or
this key's own first try."""
NO_LAST = str(2**62)
"""A last subject sequence no stream reaches: a fence that refuses every publish it is sent with."""
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
NO_MSG_ID = "gpurelay-fence-no-message"
"""A last message id no publish is sent with: the fence of an unreplicated stream."""
WRONG_LAST_MSG_ID = 10070
"""JetStream's refusal of a publish whose expected last message id does not hold."""


def unrecorded(exc: BaseException) -> ProblemError:
    """503: the frame could not be stored."""
    why = f"The frame could not be recorded ({type(exc).__name__}); retry."
    return ProblemError(503, why, headers={"Retry-After": "1"})


async def stored_as(js: JetStreamContext, stream: str, subject: str, stream_seq: int, data: bytes) -> int:
    """The seq of the frame a key stored at ``stream_seq``: 422 when its bytes are not ``data``, 409 when
    FRAMES no longer holds it (its age or byte limit)."""
    try:
        stored = await js.get_msg(stream, seq=stream_seq)
    except NotFoundError:
        raise ProblemError(409, "The frame of this Idempotency-Key was recorded and is no longer held.") from None
    except (nats.errors.Error, TimeoutError) as exc:
        why = "The frame of this Idempotency-Key could not be read; retry."
        raise ProblemError(503, why, headers={"Retry-After": "1"}) from exc
    if stored.subject != subject or stored.data != data:
        reused = field_error(("header", "Idempotency-Key"), "reused with another frame; use a new key")
        raise unprocessable("This Idempotency-Key was used with another frame.", reused)
    return int((stored.headers or {}).get(H_SEQ, 0))


async def stored_seq(
    js: JetStreamContext, stream: str, subject: str, msg_id: str, data: bytes, timeout_s: float
) -> int | None:
    """The seq the frame of ``msg_id`` was stored as, or None when FRAMES' duplicate window holds none:
    what a retry of a stored frame is answered once its session takes no more.

    The message id is sent with a fence that refuses every publish, so nothing is stored; the fence is
    one the stream checks *after* the id, so a duplicate is still answered as one. Which fence that is
    depends on the stream's replicas (nats-server 2.15), read here each time (this path is rare, and a
    stream can be scaled while the gateway runs):
    - replicated: a last subject sequence no stream reaches (:data:`NO_LAST`). Its leader checks the id
      first (``checkMsgHeadersPreClusteredProposal``). ``Nats-Expected-Last-Msg-Id`` is not used there:
      its refusal stops a replicated stream ("critical write error").
    - one replica (``gpurelay dev``'s single server, or R1 in a cluster): the subject sequence is checked
      before the id there, so the fence is a last message id no publish carries (:data:`NO_MSG_ID`),
      which is checked after it."""
    try:
        info = await js.stream_info(stream)
    except (nats.errors.Error, TimeoutError) as exc:
        raise unrecorded(exc) from exc
    if (info.config.num_replicas or 1) > 1:
        fence, fenced_out = {EXPECTED_LAST: NO_LAST}, WRONG_LAST_SEQUENCE
    else:
        fence, fenced_out = {EXPECTED_LAST_MSG_ID: NO_MSG_ID}, WRONG_LAST_MSG_ID
    headers = {MSG_ID: msg_id, **fence}
    for refused in range(1, IN_FLIGHT_TRIES + 1):
        try:
            ack = await js.publish(subject, data, headers=headers, timeout=timeout_s)
        except APIError as exc:
            if exc.err_code == fenced_out:
                return None
            if exc.err_code not in IN_FLIGHT or refused == IN_FLIGHT_TRIES:
                raise unrecorded(exc) from exc
            await asyncio.sleep(in_flight_pause_s(refused))
            continue
        except (nats.errors.Error, TimeoutError) as exc:
            raise unrecorded(exc) from exc
        if not ack.duplicate:  # the fence passed: it cannot
            raise ProblemError(503, "The frame could not be checked; retry.", headers={"Retry-After": "1"})
        return await stored_as(js, stream, subject, int(ack.seq or 0), data)
    raise AssertionError("unreachable: the last refusal raises")
