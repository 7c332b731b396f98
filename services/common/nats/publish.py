"""Publishing an event envelope to JetStream, deduplicated by its id: the one place that says how.

JetStream drops a message whose ``Nats-Msg-Id`` it has already stored (within the stream's
duplicate window), so every envelope is published with its id as ``Nats-Msg-Id``
(:func:`dedup_headers`); a retried or repeated publish of the same logical event (same id, see
:mod:`contracts.event_ids`) is stored once, and the ack says ``duplicate``. ``msg_id`` overrides the
id for a message that is one of several per envelope (a dead letter per endpoint). An attempt's
ending is published with its attempt's ``Nats-Msg-Id`` instead of its own id, so that one ending per
attempt is stored (:func:`contracts.event_ids.attempt_end_msg_id`).

:func:`publish_event` waits for the stream's ack; :func:`publish_event_async` returns the ack's
future at once (``publish_async``), for a batch whose acks are gathered together.

Because a repeat is stored once, :func:`publish_event` and :func:`republish` ride out NATS being
away for a moment (:func:`~services.common.nats.connection.is_unavailable`: a server restarting, a cluster
electing a stream leader, a request lost with its connection): they publish again, the same
``Nats-Msg-Id``, until the stream acks or :data:`RETRY_FOR_S` has passed, then raise.

:func:`republish` stores again bytes a stream already holds (an operator's replay, a dead letter's
redrive, a webhook delivery): once per ``msg_id`` (:func:`contracts.event_ids.replay_msg_id`,
:func:`~contracts.event_ids.redrive_msg_id`), marked with ``Gpurelay-Replay-Of: {stream}:{seq}``
(:data:`REPLAY_OF`) when it is a copy, so consumers can tell a copy and dedupe it.

Every envelope published here carries the W3C trace context of the code that published it
(``traceparent``: :func:`services.common.observability.tracing.inject`; nothing while no span is current), so its
consumers continue the job's trace, and is counted by type (``gpurelay_events_published_total``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck, RawStreamMsg

from contracts.envelope import EventEnvelope
from contracts.event_ids import attempt_end_msg_id
from contracts.events.registry import ATTEMPT_ENDINGS, CREATED_RECORD_REVISION
from services.common.nats.connection import is_unavailable
from services.common.observability import tracing
from services.common.observability.metric_labels import event_type_label
from services.common.observability.metrics import EVENTS_PUBLISHED

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_FOR_S = 20.0
"""How long a publish goes on trying while NATS is away (a leader election takes seconds)."""
RETRY_DELAY_S = (0.05, 1.0)
"""The first pause between two tries, and the longest (doubling in between)."""
PLACEMENT_PENDING = 10005
"""JetStream's "no suitable peers for placement": a replicated stream asked of a cluster that does not
know enough nodes yet (one still starting or joining), or never will (more replicas than nodes)."""

MSG_ID = "Nats-Msg-Id"
DUPLICATE_IN_PROCESS = 10158
"""JetStream's answer to a ``Nats-Msg-Id`` whose earlier publish is still being replicated (409): it may
yet be stored, so the publish is sent again."""
WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code for a publish whose expected last (subject) sequence no longer holds."""
WRONG_LAST_SEQUENCE_IN_FLIGHT = 10164
"""The same refusal from a clustered stream's leader while another write of that subject is in flight
(proposed, not yet applied): whether it holds cannot be told, so it is refused all the same."""
FENCED_OUT = frozenset({WRONG_LAST_SEQUENCE, WRONG_LAST_SEQUENCE_IN_FLIGHT})
"""The error codes of a publish refused by its expected last (subject) sequence."""
EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
REPLAY_OF = "Gpurelay-Replay-Of"
"""The header of a replayed or redriven copy: ``{stream}:{seq}`` of the original
(:func:`contracts.event_ids.replay_of`)."""
_NOT_COPIED = ("Nats-", "Gpurelay-Dead-", CREATED_RECORD_REVISION)
"""Headers of a stored message that a copy must not carry (JetStream's own, a dead letter's metadata, the
revision of the record a ``job.created`` was published beside)."""


def dedup_headers(event: EventEnvelope, msg_id: str | None = None) -> dict[str, str]:
    """The headers that make a publish of ``event`` idempotent: ``Nats-Msg-Id`` = ``msg_id``, else its
    attempt's when it ends one (:func:`~contracts.event_ids.attempt_end_msg_id`: one ending per attempt
    is stored, whoever publishes it), else its id."""
    if msg_id is None and event.type in ATTEMPT_ENDINGS and event.job_id and event.attempt:
        msg_id = attempt_end_msg_id(event.job_id, event.attempt)
    return {MSG_ID: msg_id or event.id}


def fence_headers(subject: str, seq: int) -> dict[str, str]:
    """The headers that store a publish only while ``seq`` is the stream's last message on ``subject``
    (another subject than the publish's own); otherwise JetStream refuses it (an error code in :data:`FENCED_OUT`).
    Checked before the duplicate window: a resend after the fence moved is refused, not acked."""
    return {EXPECTED_LAST: str(seq), EXPECTED_LAST_SUBJECT: subject}


def event_headers(event: EventEnvelope, msg_id: str | None = None) -> dict[str, str]:
    """The headers of a publish of ``event``: :func:`dedup_headers` and the current trace context; counted."""
    EVENTS_PUBLISHED.labels(event_type_label(event.type)).inc()
    headers = dedup_headers(event, msg_id)
    tracing.inject(headers)
    return headers


async def publish_event(
    js: JetStreamContext,
    subject: str,
    event: EventEnvelope,
    *,
    msg_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    unavailable: Callable[[], None] | None = None,
) -> PubAck:
    """Publish ``event`` on ``subject`` once (by its id), with ``headers`` too, and wait for the stream's
    ack (retried while NATS is away, each failed try told to ``unavailable``)."""
    body, headers = event.to_json_bytes(), {**(headers or {}), **event_headers(event, msg_id)}
    return await until_stored(lambda: js.publish(subject, body, headers=headers), subject, unavailable=unavailable)


async def publish_fenced(
    js: JetStreamContext,
    subject: str,
    event: EventEnvelope,
    fence: tuple[str, int],
    *,
    msg_id: str | None = None,
    unavailable: Callable[[], None] | None = None,
) -> PubAck | None:
    """:func:`publish_event` behind ``fence`` (a subject and the sequence that must be its last:
    :func:`fence_headers`); the ack, or ``None`` when the fence refused it (:data:`FENCED_OUT`)."""
    try:
        return await publish_event(
            js, subject, event, msg_id=msg_id, headers=fence_headers(*fence), unavailable=unavailable
        )
    except nats.js.errors.APIError as exc:
        if exc.err_code not in FENCED_OUT:
            raise
        return None


async def publish_following(
    js: JetStreamContext, stream: str, subject: str, event: EventEnvelope, fence_subject: str, follows: int
) -> PubAck | RawStreamMsg:
    """Publish ``event`` fenced on ``fence_subject`` being at ``follows``, for the mark that fence puts on
    it: while this publish is in flight, a clustered leader refuses every other publish fenced on that
    subject (10164) instead of judging it against the message this one follows, and stores it after.
    A plain publish marks only its own subject, which a fence on a slot-token wildcard never names. The
    ack; or, when ``fence_subject`` has moved past ``follows``, its last message (the caller decides,
    and may publish again following it). A refusal while another write of it is in flight is tried
    again for as long as a publish rides out NATS being away."""

    def in_flight(exc: Exception) -> bool:
        return isinstance(exc, nats.js.errors.APIError) and exc.err_code == WRONG_LAST_SEQUENCE_IN_FLIGHT

    publish = functools.partial(publish_event, js, subject, event, headers=fence_headers(fence_subject, follows))
    try:
        return await until_answered(publish, f"publish to {subject}", also_retried=in_flight)
    except nats.js.errors.APIError as exc:
        if exc.err_code != WRONG_LAST_SEQUENCE:
            raise
        return await js.get_last_msg(stream, fence_subject)


async def publish_event_async(js: JetStreamContext, subject: str, event: EventEnvelope) -> asyncio.Future[PubAck]:
    """Publish ``event`` on ``subject`` once (by its id) without waiting: the future of its ack."""
    return await js.publish_async(subject, event.to_json_bytes(), headers=event_headers(event))


def copied_headers(original: Mapping[str, str] | None) -> dict[str, str]:
    """The headers of a stored message worth keeping on a copy (not ``Nats-*``, not ``Gpurelay-Dead-*``)."""
    return {k: v for k, v in (original or {}).items() if not k.startswith(_NOT_COPIED)}


async def republish(
    js: JetStreamContext, subject: str, data: bytes, *, msg_id: str, headers: Mapping[str, str] | None = None
) -> PubAck:
    """Publish ``data`` on ``subject`` once by ``msg_id`` (with ``headers``) and wait for the stream's ack
    (retried while NATS is away)."""
    sent = {**(headers or {}), MSG_ID: msg_id}
    return await until_stored(lambda: js.publish(subject, data, headers=sent), subject)


async def until_stored(
    publish: Callable[[], Awaitable[PubAck]],
    subject: str,
    retry_for_s: float = RETRY_FOR_S,
    unavailable: Callable[[], None] | None = None,
) -> PubAck:
    """``publish()`` again while it fails with NATS away, for at most ``retry_for_s``; its ack. Each try
    that failed so is told to ``unavailable`` (a connection's stuck-server watch: its server may be cut
    off from the cluster, and the retries go nowhere until the connection moves).

    Only for a publish with a ``Nats-Msg-Id``: a try whose ack was lost may have been stored, and
    the next is then answered as a duplicate (or, while the first is still being replicated, with
    :data:`DUPLICATE_IN_PROCESS`, which is asked again too).
    """

    def in_process(exc: Exception) -> bool:
        return isinstance(exc, nats.js.errors.APIError) and exc.err_code == DUPLICATE_IN_PROCESS

    return await until_answered(publish, f"publish to {subject}", retry_for_s, unavailable, in_process)


def placement_pending(exc: Exception) -> bool:
    """Whether ``exc`` is JetStream refusing to place a stream for want of peers (:data:`PLACEMENT_PENDING`):
    tried again by the steps that make streams, as a forming cluster answers it until its last node joins."""
    return isinstance(exc, nats.js.errors.APIError) and exc.err_code == PLACEMENT_PENDING


async def until_answered(
    call: Callable[[], Awaitable[T]],
    what: str,
    retry_for_s: float = RETRY_FOR_S,
    unavailable: Callable[[], None] | None = None,
    also_retried: Callable[[Exception], bool] = lambda exc: False,
) -> T:
    """``call()`` again while it fails with NATS away (or as ``also_retried`` says), for at most
    ``retry_for_s``, with a growing pause; its answer. Only for a call that may be made again (a
    publish with a ``Nats-Msg-Id``, a read, a consumer made anew)."""
    deadline, delay = time.monotonic() + retry_for_s, RETRY_DELAY_S[0]
    while True:
        try:
            return await call()
        except Exception as exc:
            if is_unavailable(exc) and unavailable is not None:
                unavailable()
            if not (is_unavailable(exc) or also_retried(exc)) or time.monotonic() + delay > deadline:
                raise
            log.info("%s retried: %s", what, "NATS unavailable" if is_unavailable(exc) else exc)
            await asyncio.sleep(delay)
            delay = min(RETRY_DELAY_S[1], delay * 2)
