"""Bounded redelivery and dead letters for the dispatcher's consumers: a poison message never wedges one.

Every handler runs through :meth:`ConsumerGuard.run`, under a :class:`Redelivery` policy:

* success: the message is acked (or, for tickets, left to the handler, which holds it).
* a transient error (NATS unavailable, a timeout) is retried in place, the message kept alive with
  ``in_progress``, until the policy's ``handler_timeout_s``: an outage does not use up deliveries.
* any other error is logged with its traceback and the message nak'ed with a growing delay, until
  its ``max_deliver``-th delivery (JetStream's own ``max_deliver`` is set to the same number): then
  it is published to the dead letter (:mod:`contracts.dead_letters`) and terminated, so the
  consumer moves on. :class:`PoisonMessage` (bytes that are not an event) is dead-lettered at once.
* a message the server stops redelivering without a handler having given up on it (its handler
  crashed, hung past the ack wait or its replica stopped on the last delivery) is announced by the
  server's ``MAX_DELIVERIES`` advisory; :meth:`ConsumerGuard.watch_max_deliveries` dead-letters it
  from the stream.

Counters (``dead_lettered`` and ``handler_errors`` per consumer) are served on ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from contracts.dead_letters import DeadLetter, one_line
from contracts.subjects import Subjects
from services.common.nats.connection import log_failure

log = logging.getLogger(__name__)
TRANSIENT: tuple[type[BaseException], ...] = (NatsError, TimeoutError, ConnectionError)
"""Errors of the infrastructure, not of the message: retried in place, not counted as deliveries."""
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


class PoisonMessage(Exception):
    """A message no retry can process (its bytes are not a valid event): dead-lettered at once."""


@dataclass(frozen=True, slots=True)
class Redelivery:
    """How a consumer retries: ``max_deliver`` deliveries, naks ``retry_delay_s`` doubling to ``..._max_s``.

    ``handler_timeout_s`` bounds one delivery's handling (transient retries included); ``None``
    leaves it unbounded (a ticket waits for local capacity inside its handler).
    """

    max_deliver: int
    retry_delay_s: float
    retry_delay_max_s: float
    handler_timeout_s: float | None = None

    def delay_s(self, delivery: int) -> float:
        """The nak delay after a failed ``delivery`` (1-based)."""
        return float(min(self.retry_delay_max_s, self.retry_delay_s * 2.0 ** max(0, delivery - 1)))


def span_attributes(msg: Msg, durable: str) -> dict[str, str]:
    """A consumer span's messaging attributes: the message's subject and the consumer that took it."""
    return {"messaging.destination.name": msg.subject, "messaging.consumer.group.name": durable}


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    return one_line(f"{type(exc).__name__}: {exc}")


class ConsumerGuard:
    """Runs handlers with bounded redelivery and keeps the dead-letter counters of one service."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, service: str = "dispatcher") -> None:
        self.js, self.subjects, self.service = js, subjects, service
        self.dead_lettered: Counter[str] = Counter()
        self.handler_errors: Counter[str] = Counter()

    async def run(
        self, consumer: str, msg: Msg, handler: Callable[[], Awaitable[object]], policy: Redelivery, *, ack: bool
    ) -> bool:
        """Handle ``msg``; ack it on success when ``ack``; on failure nak it, or dead-letter it and move on.
        Whether it is settled (handled, or dead-lettered), not given back to come again."""
        try:
            await self._handle(consumer, msg, handler, policy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is logged, redelivered or dead-lettered
            return await self._failed(consumer, msg, exc, policy)
        if ack:
            await msg.ack()
        return True

    async def _handle(
        self, consumer: str, msg: Msg, handler: Callable[[], Awaitable[object]], policy: Redelivery
    ) -> None:
        if policy.handler_timeout_s is None:
            await handler()
            return
        delay = policy.retry_delay_s
        async with asyncio.timeout(policy.handler_timeout_s):
            while True:
                try:
                    await handler()
                    return
                except TRANSIENT as exc:
                    log.warning("%s: transient error on %s, retried in place: %s", consumer, msg.subject, describe(exc))
                    await asyncio.sleep(delay)
                    delay = min(policy.retry_delay_max_s, delay * 2)
                    with contextlib.suppress(Exception):
                        await msg.in_progress()

    async def _failed(self, consumer: str, msg: Msg, exc: Exception, policy: Redelivery) -> bool:
        meta = msg.metadata
        delivery = meta.num_delivered or 1
        give_up = isinstance(exc, PoisonMessage) or delivery >= policy.max_deliver
        self.handler_errors[consumer] += 1
        why = "%s: handling %s (stream sequence %s) failed on delivery %d of %d; %s"
        args = (consumer, msg.subject, meta.sequence.stream, delivery, policy.max_deliver)
        extra = {"consumer": consumer, "subject": msg.subject, "delivery": delivery}
        if not give_up:  # NATS away (a warning) or any other error (with its traceback)
            log_failure(log, exc, why, *args, "it will be redelivered", extra=extra)
        else:
            log.error(why, *args, "dead-lettering it", exc_info=exc, extra=extra)
            letter = DeadLetter(
                service=self.service, consumer=consumer, stream=meta.stream, subject=msg.subject,
                sequence=meta.sequence.stream, deliveries=delivery, error=describe(exc), data=msg.data,
            )  # fmt: skip
            if await self.dead_letter(letter):
                await msg.term()
                return True
        await msg.nak(delay=policy.delay_s(delivery))
        return False

    async def dead_letter(self, letter: DeadLetter) -> bool:
        """Store ``letter`` in the dead letter (once per message); ``False`` if it could not be stored."""
        subject = self.subjects.dead_letter(self.service, letter.consumer)
        try:
            ack = await self.js.publish(subject, letter.data, headers=letter.headers())
        except Exception:
            log.exception("%s: could not dead-letter %s #%d", letter.consumer, letter.stream, letter.sequence)
            return False
        if not ack.duplicate:
            self.dead_lettered[letter.consumer] += 1
            log.error(
                "%s: dead-lettered %s (stream %s sequence %d) after %d deliveries: %s",
                letter.consumer, letter.subject, letter.stream, letter.sequence, letter.deliveries, letter.error,
                extra={"consumer": letter.consumer, "subject": letter.subject, "dead_letter": subject},
            )  # fmt: skip
        return True

    async def watch_max_deliveries(self, nc: NatsClient, stream: str, consumer: str) -> Any:
        """Dead-letter what the server gives up on for ``consumer`` of ``stream``; the subscription."""

        async def on_advisory(advisory: Msg) -> None:
            try:
                body = json.loads(advisory.data)
                sequence, deliveries = int(body["stream_seq"]), int(body.get("deliveries") or 1)
                stored = await self.js.get_msg(stream, sequence)
                letter = DeadLetter(
                    service=self.service, consumer=consumer, stream=stream, subject=stored.subject or "?",
                    sequence=sequence, deliveries=deliveries, data=stored.data or b"",
                    error="delivered the most times allowed and never acknowledged "
                    "(its handler crashed, hung past the ack wait, or its replica stopped)",
                )  # fmt: skip
                await self.dead_letter(letter)
            except Exception:
                log.exception("%s: a MAX_DELIVERIES advisory could not be dead-lettered", consumer)

        subject = MAX_DELIVERIES_ADVISORY.format(stream=stream, consumer=consumer)
        return await nc.subscribe(subject, cb=on_advisory)

    def metrics(self) -> dict[str, dict[str, int]]:
        """The counters, per consumer."""
        return {"dead_lettered": dict(self.dead_lettered), "handler_errors": dict(self.handler_errors)}


async def bound_redeliveries(js: JetStreamContext, stream: str, durable: str, max_deliver: int) -> None:
    """Set ``max_deliver`` on an existing durable consumer (one made before the setting existed)."""
    info = await js.consumer_info(stream, durable)
    if info.config.max_deliver != max_deliver:
        await js.add_consumer(stream, config=info.config.evolve(max_deliver=max_deliver))
