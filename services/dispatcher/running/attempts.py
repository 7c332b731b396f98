"""Running attempts: a dispatch ticket in, a terminal or ``retrying`` event out.

:meth:`Attempts.on_ticket` takes a ticket (a slot of its kind), asks the
:class:`~services.dispatcher.scheduling.scheduler.Scheduler` which queued attempt fills it (fair share across
tenants, priority within one), and holds the ticket, un-acked, while that attempt runs; the
attempt's queue entry is dropped and the ticket acked when it ends, which frees the slot (a live session's
lost attempt frees it once its resume is due, so that the resume fills it). Each held attempt has a
supervisor task that launches the run (every stage in turn for a pipeline) and waits for the first
of: the run's outcome, a crash (the pool sees it at once), the route's timeout, missed heartbeats,
a cancel request, or the job ending elsewhere. The record it watches is followed as KV stores it
(:mod:`services.dispatcher.running.held_records`: a subscription to the job's republished revisions, made
before the record is read). A ticket redelivered after a dispatcher died finds its job
already dispatched and is *adopted*: supervised from the record alone (heartbeats, timeout,
cancel by call id), never run a second time.

Each attempt is a span in the job's trace (the ticket's headers carry it), handed on to the worker in
``RunRequest.trace``; its queue wait and run time are observed (:mod:`services.dispatcher.observe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from pydantic import ValidationError

from contracts.event_ids import attempt_event_id, stage_event_name
from contracts.events import jobs as je
from contracts.events.registry import ATTEMPT_ENDINGS, EventType, job_event_name
from contracts.job_record import Artifact, JobError, JobRecord, JobStatus, StageStatus
from contracts.route_table import Route
from contracts.runs import RunRequest, StagePlan
from services.common.nats.connection import cancel_and_wait, log_failure
from services.common.observability import tracing
from services.dispatcher.consumers import PoisonMessage
from services.dispatcher.observe import observe_attempt, observe_launch
from services.dispatcher.running.backends import Backend, BackendUnavailableError, Launch, LaunchedElsewhereError
from services.dispatcher.running.hearing import Hearing, since_stamp
from services.dispatcher.running.held_records import Follower, HeldRecords
from services.dispatcher.running.supervision import Held, Verdict, ended_as, wait_for_verdict
from services.dispatcher.scheduling.queue import entry_key
from services.dispatcher.scheduling.scheduler import Decision, Scheduler
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.store import JobEvents, JobStore, Ticket

log = logging.getLogger(__name__)
_S = JobStatus
RESUME_QUEUED_S = 5.0
"""How long a lost session's slot waits, past the backoff, for the fold to queue its resume."""


class Attempts:
    """The attempts this replica runs or supervises."""

    def __init__(
        self,
        settings: DispatcherSettings,
        routes: dict[str, Route],
        backends: dict[str, Backend],
        store: JobStore,
        events: JobEvents,
        scheduler: Scheduler,
        records: HeldRecords,
        hearing: Hearing | None = None,
    ) -> None:
        self.settings, self.routes, self.backends = settings, routes, backends
        self.store, self.events, self.scheduler, self.records = store, events, scheduler, records
        self.held: dict[tuple[str, int], Held] = {}
        self.silence = settings.heartbeat_interval_s * settings.heartbeat_misses
        self.hearing = hearing
        """What a silence is confirmed against before it is called (``None``: the record alone)."""

    # -- tickets ----------------------------------------------------------------------------
    async def on_ticket(self, body: bytes, msg: Msg) -> None:
        """Fill the slot a ticket holds: start, adopt or drop the attempt the scheduler gives it (the
        subscriber waits here for local capacity)."""
        try:
            token = Ticket.model_validate_json(body)
        except ValidationError as exc:
            raise PoisonMessage(f"not a valid dispatch ticket: {exc}") from exc
        if token.not_before > time.time():  # a backoff: the top-up brings a ticket when it is due
            await msg.ack()
            return
        # Most tickets claim their own attempt: its record is followed, and read, while the claim is made.
        follower = await self.records.follow(token.tenant, token.job_id)
        reading = asyncio.ensure_future(self.records.read(follower))
        try:
            meta = msg.metadata
            decision = await self.scheduler.take(token.kind, meta.sequence.stream, (meta.num_delivered or 1) > 1)
            ticket = decision.entry.ticket() if decision.entry is not None else None
            if ticket is not None and (ticket.tenant, ticket.job_id) != (token.tenant, token.job_id):
                _discard(reading)
                await self.records.stop(follower)
                follower = await self.records.follow(ticket.tenant, ticket.job_id)
                reading = asyncio.ensure_future(self.records.read(follower))
            if ticket is None:
                if (meta.num_delivered or 1) > 1:  # rare (after a fault): said, so a claim it leaves can be traced
                    log.warning("ticket %d (delivery %d) found no attempt to claim; acked",
                                meta.sequence.stream, meta.num_delivered)  # fmt: skip
                await msg.ack()
            elif (held := self.held.get((ticket.key, ticket.attempt))) is not None:
                await _held_again(held, msg)
            elif not await self._fill(ticket, decision, msg, follower, *(record := await reading)):
                if not decision.fresh:
                    log.warning("ticket %d (delivery %d): attempt %d is not run (its record: %s); its entry is dropped",
                                meta.sequence.stream, meta.num_delivered, ticket.attempt,
                                record[0].status if record[0] else "none", extra={"job_id": ticket.job_id})  # fmt: skip
                await self._drop(decision, msg)
        finally:
            _discard(reading)
            if not any(held.follower is follower for held in self.held.values()):
                await self.records.stop(follower)

    async def _fill(
        self,
        ticket: Ticket,
        decision: Decision,
        msg: Msg,
        follower: Follower,
        record: JobRecord | None,
        revision: int | None,
    ) -> bool:
        """Start or adopt the claimed attempt (held from now on); ``False`` when there is nothing to run."""
        route = self.routes.get(ticket.kind)
        if record is None or record.terminal or route is None:
            return False
        starting = (record.status is _S.QUEUED and ticket.attempt == record.attempt) or (
            record.status is _S.RETRYING and ticket.attempt == record.attempt + 1
        )
        # A fresh claim needs no look at the stream: its entry exists, so job.queued was published
        # before it (the reactions queue a job after that), and no token has launched it.
        if record.status is _S.CREATED and ticket.attempt == 1:  # queued; the record lags the stream
            starting = decision.fresh or await self.events.last(record, "queued") is not None
        adopting = record.status in (_S.DISPATCHED, _S.RUNNING) and ticket.attempt == record.attempt
        launched = starting and not decision.fresh
        dispatched_at = await self.events.dispatched_at(record, ticket.attempt) if launched else None
        if dispatched_at is not None:  # the record lags the stream: a replica that died launched it
            starting, adopting = False, True
        if not (starting or adopting) or (starting and record.cancel_requested):
            return False  # stale, or the fold cancels it
        held = Held(ticket, msg, record, route, revision=revision or 0, claim=decision, follower=follower)
        follower.hand_to(held.offer)  # a newer revision than the one read, and every later one
        if adopting:  # its age by the stamps another replica and its worker left (cross-host: wall clock)
            when = dispatched_at or record.timings.dispatched_at
            held.began = since_stamp(when.timestamp()) if when else time.monotonic()
            signs = [t.timestamp() for t in (record.heartbeat_at, record.timings.started_at) if t is not None]
            held.seen_at = since_stamp(max(signs)) if signs else 0.0
        backend = self.backends[route.backend]
        reservation = None if adopting else await backend.reserve()
        if not adopting:
            observe_launch(ticket, msg)
        self.held[ticket.key, ticket.attempt] = held
        held.task = asyncio.create_task(self._supervise(held, backend, reservation, adopting))
        return True

    async def _drop(self, decision: Decision, msg: Msg) -> None:
        """Nothing to run for this claim: drop its entry, free the slot."""
        entry = decision.entry
        if entry is not None and not await self.scheduler.release(entry, decision.revision):
            await self.scheduler.queue.reload(entry.key)  # the bucket leader's, not a lagging view
            if self.scheduler.queue.revision(entry.key) is None:  # dropped by another: a cancel before the run
                log.info("queue entry %s was dropped before this ticket dropped it", entry.key)
            else:
                log.warning("queue entry %s moved on from revision %d before it was dropped", entry.key,
                            decision.revision, extra={"job_id": entry.job_id})  # fmt: skip
        await msg.ack()

    def holding(self) -> list[str]:
        """The queue entry keys of the attempts this replica holds."""
        return [entry_key(t.kind, t.tenant, t.job_id, t.attempt) for t in (h.ticket for h in self.held.values())]

    async def refresh(self) -> None:
        """Tell JetStream every held ticket is still being worked on (call every ack_wait/3), and read
        the held records again after a reconnect (:meth:`HeldRecords.refresh`)."""
        for held in list(self.held.values()):
            with contextlib.suppress(Exception):
                await held.msg.in_progress()
        await self.records.refresh()

    async def stop(self) -> None:
        """Stop supervising (tickets stay un-acked, so another replica adopts the attempts)."""
        await cancel_and_wait([h.task for h in self.held.values() if h.task is not None])

    # -- one attempt ------------------------------------------------------------------------
    async def _supervise(self, held: Held, backend: Backend, reservation: Any, adopting: bool) -> None:
        ticket = held.ticket
        attributes = {"job.id": ticket.job_id, "job.kind": ticket.kind, "job.attempt": ticket.attempt}
        try:
            with tracing.span(f"attempt {ticket.kind}", attributes={**attributes, "adopted": adopting}):
                if adopting:
                    timeout_at = held.began + held.route.timeout_s
                    verdict = await wait_for_verdict(held, None, timeout_at, self.silence, self.hearing)
                    await self._conclude(held, verdict, None, backend)
                else:
                    await self._run_stages(held, backend, reservation)
            ran_s = time.monotonic() - held.began
            observe_attempt(ticket.kind, held.outcome, ran_s)
            self.scheduler.finished(held.claim.entry, ran_s, held.outcome == "succeeded")
            if held.outcome == "retrying" and held.record.session is not None:
                await self._keep_slot_for_resume(held)
            await self._drop(held.claim, held.msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            log_failure(log, exc, "attempt supervision failed", extra={"job_id": held.ticket.job_id})
            with contextlib.suppress(Exception):
                await held.msg.nak(delay=1.0)
        finally:
            self.held.pop((held.ticket.key, held.ticket.attempt), None)
            if held.follower is not None:
                await self.records.stop(held.follower)

    async def _keep_slot_for_resume(self, held: Held) -> None:
        """A live session's next attempt (its resume) gets the slot its lost one held: the slot is given up
        once that attempt is queued and due (its backoff waited out), so the decision that fills it sees
        the resume, which is older than every session queued behind it. Given up at once, the slot went
        to one of them, and the resume waited until that session was stopped."""
        ticket = held.ticket
        resume = entry_key(ticket.kind, ticket.tenant, ticket.job_id, ticket.attempt + 1)
        if not await self.scheduler.queue.until_due(resume, held.route.retries.backoff_max_s + RESUME_QUEUED_S):
            log.warning("session %s: its resume was not queued in time; its slot is given up", ticket.job_id)

    async def _run_stages(self, held: Held, backend: Backend, reservation: Any) -> None:
        route, ticket = held.route, held.ticket
        steps, weights = route.steps(), route.weights()
        inputs: tuple[Artifact, ...] = ()
        produced: list[Artifact] = []
        result: dict[str, Any] = {}
        reports: dict[str, Any] = {}
        resumes_after = await self._previous_end(held)
        dispatched_seq = 0  # the first stage's job.dispatched: every stage's worker is fenced by it
        for index, stage in enumerate(steps):
            plan = None
            if route.is_pipeline:
                offset = sum(weights[:index])
                plan = StagePlan(name=stage.name, index=index, count=len(steps), offset=offset, weight=weights[index])
            request = RunRequest(
                tenant=ticket.tenant,
                job_id=ticket.job_id,
                kind=ticket.kind,
                attempt=ticket.attempt,
                spec=held.record.spec.model_dump(mode="json"),
                function=stage.local or stage.function,
                inputs=inputs,
                stage=plan,
                heartbeat_interval_s=self.settings.heartbeat_interval_s,
                progress_min_interval_s=self.settings.progress_min_interval_s,
                storage_prefix=self.settings.storage_prefix,
                created_at=held.record.created_at,
                trace=tracing.inject({}),
                resumes_after=resumes_after,
            )

            async def announce(
                call_id: str, gpu: str | None, first: bool = index == 0, fn: str = stage.function
            ) -> int:
                nonlocal dispatched_seq
                if first:
                    payload = je.JobDispatchedPayload(backend=backend.name, function=fn, gpu=gpu, call_id=call_id)
                    dispatched_seq = await self.events.publish_dispatched(held.record, payload, ticket.attempt)
                    if not dispatched_seq:
                        raise LaunchedElsewhereError(f"{ticket.job_id} attempt {ticket.attempt}")
                return dispatched_seq

            try:
                if index > 0:
                    reservation = await backend.reserve()
                launch = await backend.launch(reservation, request, route, stage, announce)
            except BackendUnavailableError as exc:
                await self._conclude(held, Verdict("lost", message=str(exc)), None, backend, "backend_unavailable")
                return
            except LaunchedElsewhereError:  # another replica launched this attempt first: watch, never run it twice
                log.warning("attempt launched by another replica; supervised from its record",
                            extra={"job_id": ticket.job_id, "attempt": ticket.attempt})  # fmt: skip
                timeout_at = held.began + route.timeout_s
                await self._conclude(held, await wait_for_verdict(held, None, timeout_at, self.silence, self.hearing),
                                     None, backend)  # fmt: skip
                return
            if plan is not None:
                await self._stage(held, plan, StageStatus.RUNNING)
            stage_began = time.monotonic()
            held.began = stage_began if index == 0 else held.began
            timeout_at = stage_began + route.stage_timeout_s(stage)
            verdict = await wait_for_verdict(held, launch, timeout_at, self.silence, self.hearing)
            outcome = verdict.outcome
            if plan is None or outcome is None or outcome.status != "succeeded":
                if plan is not None:
                    await self._stage(held, plan, StageStatus.FAILED)
                await self._conclude(held, verdict, launch, backend)
                return
            await self._stage(held, plan, StageStatus.SUCCEEDED)
            inputs = outcome.artifacts
            produced += outcome.artifacts
            result.update(outcome.result)  # a pipeline's result: every stage's, the later winning
            reports[stage.name] = route.stage_report(stage, time.monotonic() - stage_began)
            if index == len(steps) - 1:
                payload = je.JobSucceededPayload(result={**result, "stages": reports}, artifacts=tuple(produced))
                await self._publish(held, EventType.JOB_SUCCEEDED, payload, "succeeded")

    async def _previous_end(self, held: Held) -> datetime | None:
        """For a live session's later attempt: when the attempt before it ended (its ``job.retrying``),
        from which its worker counts the session's gap when it resumes."""
        if held.record.session is None or held.ticket.attempt < 2:
            return None
        retrying = await self.events.last(held.record, "retrying")
        return retrying.time if retrying is not None and retrying.attempt == held.ticket.attempt - 1 else None

    async def _conclude(
        self, held: Held, verdict: Verdict, launch: Launch | None, backend: Backend, code: str = ""
    ) -> None:
        """Turn a verdict into the attempt's last event(s)."""
        adopted_end = launch is None and verdict.reason in ("timeout", "silent", "lost")
        if adopted_end and (worker_end := await self._reported_end(held)):
            held.outcome = worker_end  # its worker ended it; the record lags (the fold was away)
            return
        outcome = verdict.outcome
        if outcome is not None and outcome.status == "succeeded":
            held.outcome = "succeeded"  # the worker published job.succeeded
        if verdict.reason == "ended":
            held.outcome = ended_as(held)  # the record came before the worker's outcome
        if verdict.reason in ("timeout", "silent", "cancel", "ended"):
            await self._cancel_run(held, launch, backend)
        if verdict.reason == "cancel":
            attempt = held.ticket.attempt
            ending = await self.events.publish_canceled(held.record, je.JobCanceledPayload(), attempt, attempt)
            held.outcome = ending.type.removeprefix("job.")  # canceled, unless its worker's ending came first
        elif verdict.reason == "timeout":
            await self._retry_or_fail(held, "timeout", verdict.message, held.route.retries.retry_on_timeout)
        elif verdict.reason in ("silent", "lost"):
            lost_ok = held.route.retries.retry_on_worker_lost
            await self._retry_or_fail(held, code or "worker_lost", verdict.message, lost_ok or bool(code))
        elif outcome is not None and outcome.error is not None and outcome.status == "permanent":
            held.outcome = "failed"
            reported = await self.events.last(held.record, "failed")  # the worker's own (its id is not ours)
            if reported is None or reported.attempt != held.ticket.attempt:
                await self._publish(held, EventType.JOB_FAILED, je.JobFailedPayload(error=outcome.error), "failed")
        elif outcome is not None and outcome.error is not None and outcome.status == "retryable":
            await self._retry_or_fail(held, outcome.error.code, outcome.error.message, True)

    async def _reported_end(self, held: Held) -> str | None:
        """``succeeded`` or ``failed`` when this attempt's worker published its end in the stream, else
        ``None`` (also when the stream cannot be read). Asked for adopted attempts only: an own run that
        went silent is canceled at once, as before (its replica may be cut off from NATS). A ticket
        adopted after its record stopped following the stream (NATS lost a node) must not be retried,
        nor its pool process killed, for a silence that came after the run ended."""
        try:
            for name in ("succeeded", "failed"):
                event = await self.events.last(held.record, name)
                if event is not None and event.attempt == held.ticket.attempt:
                    return name
        except Exception as exc:  # noqa: BLE001 - NATS away: concluded as before (retried, its call canceled)
            log_failure(log, exc, "the stream could not say whether attempt %d ended", held.ticket.attempt)
        return None

    async def _cancel_run(self, held: Held, launch: Launch | None, backend: Backend) -> None:
        """Stop the run: ours by its launch; one known by its call id only when its worker did not end
        the attempt itself (its process then runs something else: a pool process is reused)."""
        with contextlib.suppress(Exception):
            if launch is not None:
                if not launch.outcome.done():
                    await launch.cancel()
                    await asyncio.wait({launch.outcome}, timeout=5)
            elif held.record.call_id and ended_as(held) == "ended":
                await backend.cancel_call(held.record.call_id, held.ticket.job_id, held.ticket.attempt)

    async def _retry_or_fail(self, held: Held, code: str, message: str, retry: bool) -> None:
        attempt, policy = held.ticket.attempt, held.route.retries
        session = held.record.session
        retry = retry and (session is None or session.resumable is not False)  # a session it cannot resume fails
        if retry and attempt < min(policy.max_attempts, held.record.max_attempts):
            delay = policy.delay_s(attempt)
            payload = je.JobRetryingPayload(reason=code, message=message, next_attempt=attempt + 1, delay_s=delay)
            await self._publish(held, EventType.JOB_RETRYING, payload, "retrying")
        else:
            error = JobError(code=code, message=message, retryable=retry)
            await self._publish(held, EventType.JOB_FAILED, je.JobFailedPayload(error=error), "failed")

    async def _stage(self, held: Held, plan: StagePlan, status: StageStatus) -> None:
        payload = je.JobStagePayload(name=plan.name, index=plan.index, count=plan.count, status=status)
        await self._publish(held, EventType.JOB_STAGE, payload, stage_event_name(plan.index, status))

    async def _publish(self, held: Held, type_: EventType, payload: Any, name: str) -> None:
        """Publish the attempt's ``name`` event (:func:`~contracts.event_ids.attempt_event_id`)."""
        job, attempt = held.ticket.job_id, held.ticket.attempt
        if type_ in ATTEMPT_ENDINGS:
            held.outcome = name
        event_id = attempt_event_id(job, attempt, name)
        stored = await self.events.publish(held.record, type_, payload, event_id, attempt=attempt)
        if stored.id != event_id:  # its worker ended the attempt first: this ending was not stored
            held.outcome = job_event_name(stored.type)


def _discard(task: asyncio.Future[Any]) -> None:
    """Cancel ``task``, whose result is not wanted (an error it already had is not reported)."""
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


async def _held_again(held: Held, msg: Msg) -> None:
    """A ticket whose attempt this replica holds: a spare one is acked. The held ticket itself, delivered
    again (its ack wait ran out while this replica could not say it still works on it), is kept: the new
    delivery is the one acked when the attempt ends. Acked now, it would free the slot while the attempt
    runs, and leave its queue entry claimed by a ticket gone from DISPATCH."""
    if held.msg.metadata.sequence.stream == msg.metadata.sequence.stream:
        held.msg = msg
    else:
        await msg.ack()
