"""Folding one partition's batch: each job's events in stream order, one KV write per job and batch.

A batch (:mod:`~services.dispatcher.fold.serial`) holds up to ``fold_batch`` events of one
partition, read while this replica holds the partition's pin, so no one else folds its jobs. The
events are grouped by job; the jobs fold concurrently, each one's events in order over its record
read once (a new job's at ``job.created``, as the gateway created it, is not read: the event has its
revision in a header). The record is written (compare-and-set on its revision) before every event
that has a reaction (:data:`~services.dispatcher.fold.reactions.REACTS_TO`, which then sees its record
in KV as the serial fold left it) and once at the end, so a burst of progress or heartbeats costs one write.

Failures keep the serial fold's rules, retried in place rather than redelivered (a redelivery
could come after later events of the same job): an event whose fold or reaction raises is tried
again, from the record re-read, up to ``event_max_deliver`` times with the growing delay, then
dead-lettered, and its job goes on with the next. Errors of the infrastructure (NATS down, a
timeout) are retried until the batch's deadline; past it the batch is given up and redelivered
whole (folding an event again in order changes nothing). A job with a redelivered event, which may
have come after later ones, is handed on to be folded again from JOBS (:mod:`~services.dispatcher.fold.refold`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext

from nats.aio.msg import Msg
from prometheus_client import Counter

from contracts.dead_letters import DeadLetter
from contracts.envelope import EventEnvelope
from services.common.observability import tracing
from services.common.observability.metric_labels import subject_event_label
from services.common.observability.metrics import EVENTS_CONSUMED
from services.dispatcher.consumers import TRANSIENT, ConsumerGuard, PoisonMessage, Redelivery, describe, span_attributes
from services.dispatcher.fold.batch_records import BatchRecords, JobRun, RecordCache
from services.dispatcher.fold.reactions import REACTS_TO, Reactions, parse_envelope
from services.dispatcher.fold.records import apply
from services.dispatcher.observe import observe_folded
from services.dispatcher.store import JobStore

log = logging.getLogger(__name__)


class BatchExpired(Exception):
    """The batch ran past its deadline on errors of the infrastructure: redeliver it whole."""


async def _no_refold(tenant: str, job_id: str) -> None:
    """No one folds jobs again (a fold without :class:`~services.dispatcher.fold.refold.Refolds`)."""


class BatchFold:
    """Folds batches of one partition consumer (``durable``) with ``reactions``."""

    def __init__(
        self,
        reactions: Reactions,
        guard: ConsumerGuard,
        policy: Redelivery,
        durable: str,
        label: str,
        cache: RecordCache | None = None,
        refold_later: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.reactions, self.guard, self.policy = reactions, guard, policy
        self.refold_later = refold_later or _no_refold
        """Told (tenant, job id) of each job with a redelivered event, before the batch is acked
        (:mod:`~services.dispatcher.fold.refold`: it marks the job in KV)."""
        self.cache = cache or RecordCache(0)
        self._counters: dict[str, Counter] = {}
        self.store: JobStore = reactions.store
        self.records = BatchRecords(self.store, self.cache)
        self.durable, self.label = durable, label

    async def fold(self, msgs: list[Msg], deadline: float) -> None:
        """Fold every event of ``msgs`` (dead-lettering those that cannot be); :class:`BatchExpired`
        when errors of the infrastructure outlast ``deadline`` (``time.monotonic()``)."""
        runs: dict[tuple[str, str], JobRun] = {}
        # Redeliveries (a holder died, or its acks went unconfirmed) come in no particular order.
        for msg in sorted(msgs, key=lambda m: m.metadata.sequence.stream):
            self._consumed(subject_event_label(msg.subject)).inc()
            try:
                event = parse_envelope(msg.data)
            except PoisonMessage as exc:
                await self._give_up(msg, exc, 1)
                continue
            if event.job_id is None:
                continue
            run = runs.setdefault((event.tenant, event.job_id), JobRun(event.tenant, event.job_id))
            run.events.append((msg, event))
        # Every job's run ends before a failure is raised: the batch is then given back, and no run of
        # it may still be writing while its events are folded again.
        folds = (self._fold_run(run, deadline) for run in runs.values())
        results = await asyncio.gather(*folds, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _consumed(self, event_type: str) -> Counter:
        """The consumed-events counter of ``event_type`` (its labelled child, made once)."""
        child = self._counters.get(event_type)
        if child is None:
            child = self._counters[event_type] = EVENTS_CONSUMED.labels(self.label, event_type)
        return child

    async def _fold_run(self, run: JobRun, deadline: float) -> None:
        for msg, event in run.events:
            self.records.take_created(run, msg, event)
            await self._step(run, msg, event, deadline)
        await self._retrying(run, deadline, lambda: self.records.flush(run))
        if any(msg.metadata.num_delivered > 1 for msg, _ in run.events):  # maybe after later events
            await self._retrying(run, deadline, lambda: self.refold_later(run.tenant, run.job_id))

    async def _step(self, run: JobRun, msg: Msg, event: EventEnvelope, deadline: float) -> None:
        """Fold one event (and react), retried in place; dead-lettered after ``max_deliver`` tries."""
        with self._span(msg, event):
            tries = 0
            while True:
                tries += 1
                try:
                    await self._retrying(run, deadline, lambda: self._fold_event(run, event))
                    return
                except BatchExpired:
                    raise
                except Exception as exc:  # noqa: BLE001 - logged, retried or dead-lettered
                    self.records.stale(run)  # re-read the record (and re-apply what is not written) next try
                    if tries >= self.policy.max_deliver:
                        run.unwritten = [e for e in run.unwritten if e is not event]
                        await self._give_up(msg, exc, tries)
                        return
                    self._log_failure(msg, exc, tries, give_up=False)
                    await asyncio.sleep(self.policy.delay_s(tries))

    def _span(self, msg: Msg, event: EventEnvelope) -> AbstractContextManager[object]:
        """The event's consumer span; none when no span is recorded here and the event has no
        reaction (nothing is published under it, so its context would go nowhere)."""
        if not tracing.enabled() and event.type not in REACTS_TO:
            return nullcontext()
        attributes = span_attributes(msg, self.durable)
        return tracing.consumer_span(f"{self.label} {subject_event_label(msg.subject)}", msg.headers, **attributes)

    async def _retrying(self, run: JobRun, deadline: float, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` again while it fails on the infrastructure, until ``deadline``."""
        delay = self.policy.retry_delay_s
        while True:
            try:
                await step()
                return
            except TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise BatchExpired(f"job {run.job_id}: {describe(exc)}") from exc
                log.warning("%s: transient error on job %s, retried: %s", self.durable, run.job_id, describe(exc))
                self.records.stale(run)
                await asyncio.sleep(delay)
                delay = min(self.policy.retry_delay_max_s, delay * 2)

    async def _fold_event(self, run: JobRun, event: EventEnvelope) -> None:
        if not run.loaded:
            await self.records.load(run)
        moved = apply(run.record, event, self.store.pricing)
        if moved is not None and moved is not run.record:
            run.record = moved
            run.unwritten.append(event)
            observe_folded(moved)
        if event.type in REACTS_TO and run.record is not None:
            await self.records.flush(run)
            await self.reactions.react(event, run.record)

    async def _give_up(self, msg: Msg, exc: Exception, tries: int) -> None:
        """Dead-letter ``msg`` after ``tries`` (the batch's ack then covers it)."""
        self._log_failure(msg, exc, tries, give_up=True)
        meta = msg.metadata
        letter = DeadLetter(
            service=self.guard.service, consumer=self.durable, stream=meta.stream, subject=msg.subject,
            sequence=meta.sequence.stream, deliveries=tries, error=describe(exc), data=msg.data,
        )  # fmt: skip
        if not await self.guard.dead_letter(letter):
            raise BatchExpired(f"{msg.subject}: could not be dead-lettered")

    def _log_failure(self, msg: Msg, exc: Exception, tries: int, give_up: bool) -> None:
        self.guard.handler_errors[self.durable] += 1
        log.error(
            "%s: handling %s (stream sequence %s) failed on delivery %d of %d; %s",
            self.durable, msg.subject, msg.metadata.sequence.stream, tries, self.policy.max_deliver,
            "dead-lettering it" if give_up else "it will be retried",
            exc_info=exc,
            extra={"consumer": self.durable, "subject": msg.subject, "delivery": tries},
        )  # fmt: skip
