"""What a frame sent with an ``Idempotency-Key`` was stored as, and the 503 of a frame not stored.

A keyed frame's ``Nats-Msg-Id`` is its key's (:func:`~contracts.event_ids.frame_key_msg_id`); JetStream
answers a retry within FRAMES' duplicate window with the stream sequence of the first, and the frame
read there gives the seq it was numbered (or shows the key was used with other bytes).
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from contracts.session_feed import H_SEQ
from services.common.http.problem import ProblemError, field_error, unprocessable
from services.common.nats.kv import IN_FLIGHT_TRIES, in_flight_pause_s
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

    The message id is sent with a fence no subject passes (:data:`NO_LAST`), so nothing is stored. A
    replicated stream's leader answers a duplicate before it checks that fence (nats-server's
    ``checkMsgHeadersPreClusteredProposal``); a server without a cluster checks the fence first, so there
    the answer is None (a 409), as it is once the duplicate window has passed.
    ``Nats-Expected-Last-Msg-Id``, checked after the duplicate on both, is not used: on a replicated
    stream its refusal stops the stream (nats-server 2.15.1 logs a "critical write error")."""
    headers = {MSG_ID: msg_id, EXPECTED_LAST: NO_LAST}
    for refused in range(1, IN_FLIGHT_TRIES + 1):
        try:
            ack = await js.publish(subject, data, headers=headers, timeout=timeout_s)
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return None
            if exc.err_code not in IN_FLIGHT or refused == IN_FLIGHT_TRIES:
                raise unrecorded(exc) from exc
            await asyncio.sleep(in_flight_pause_s(refused))
            continue
        except (nats.errors.Error, TimeoutError) as exc:
            raise unrecorded(exc) from exc
        if not ack.duplicate:  # the fence passed: no stream reaches NO_LAST
            raise ProblemError(503, "The frame could not be checked; retry.", headers={"Retry-After": "1"})
        return await stored_as(js, stream, subject, int(ack.seq or 0), data)
    raise AssertionError("unreachable: the last refusal raises")
