"""Running one held attempt: its stages launched in turn, and how it ended turned into its last events.

:class:`Runner` launches each stage of a held attempt (:class:`~services.dispatcher.running.supervision.Held`)
on its backend, publishing ``job.dispatched`` once (every stage's worker is fenced by it), waits for each
stage's verdict (:func:`~services.dispatcher.running.supervision.wait_for_verdict`) and concludes the
attempt: succeeded, failed, retrying or canceled, its run stopped when the verdict says so. The ticket and
its slot stay with :class:`~services.dispatcher.running.attempts.Attempts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any

from contracts.event_ids import attempt_event_id, stage_event_name
from contracts.events import jobs as je
from contracts.events.registry import ATTEMPT_ENDINGS, EventType, job_event_name
from contracts.job_parts import Artifact, JobError, StageStatus
from contracts.runs import RunRequest, StagePlan
from services.common.nats.connection import log_failure
from services.common.observability import tracing
from services.dispatcher.job_events import JobEvents
from services.dispatcher.running.backends import Backend, BackendUnavailableError, Launch, LaunchedElsewhereError
from services.dispatcher.running.hearing import Hearing
from services.dispatcher.running.supervision import Held, Verdict, ended_as, wait_for_verdict
from services.dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)


class Runner:
    """Runs held attempts' stages and concludes them (``silence``: how long without a sign of life a
    worker is taken for lost, confirmed against ``hearing`` when there is one)."""

    def __init__(
        self, settings: DispatcherSettings, events: JobEvents, silence: float, hearing: Hearing | None = None
    ) -> None:
        self.settings, self.events, self.silence, self.hearing = settings, events, silence, hearing

    async def watch(self, held: Held, backend: Backend) -> None:
        """Supervise an attempt run elsewhere (adopted from a replica that died, or launched by another
        first) from its record alone until its verdict, and conclude it: never run a second time."""
        timeout_at = held.began + held.route.timeout_s
        verdict = await wait_for_verdict(held, None, timeout_at, self.silence, self.hearing)
        await self.conclude(held, verdict, None, backend)

    async def run_stages(self, held: Held, backend: Backend, reservation: Any) -> None:
        """Launch each stage in turn on ``backend`` (the first on ``reservation``; the first launch publishes
        ``job.dispatched``, which fences every stage's worker), each taking the artifacts of the one before,
        wait for its verdict and conclude the attempt (a pipeline's ``job.succeeded`` after its last stage)."""
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
                await self.conclude(held, Verdict("lost", message=str(exc)), None, backend, "backend_unavailable")
                return
            except LaunchedElsewhereError:  # another replica launched this attempt first: watch, never run it twice
                log.warning("attempt launched by another replica; supervised from its record",
                            extra={"job_id": ticket.job_id, "attempt": ticket.attempt})  # fmt: skip
                await self.watch(held, backend)
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
                await self.conclude(held, verdict, launch, backend)
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

    async def conclude(
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
