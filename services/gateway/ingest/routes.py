"""``POST /v1/internal/jobs/{job_id}/events``: workers that cannot reach NATS post their events here.

Auth is a job-scoped ingest token (:mod:`services.common.auth.ingest_tokens`, minted by the dispatcher
for one attempt of one job), not an API key. The whole request is checked before anything is
published: the token's job must be the path's (else 403), every event's tenant, job id and attempt
must be the token's (else 403); else 422 for: a time without a timezone (the envelope refuses it),
an id outside the attempt's worker namespace ``w-{job}-a{attempt}-...``
(:mod:`contracts.event_ids`: platform ids such as ``cancel-{job}`` cannot be pre-empted), a type a
worker may not emit, data invalid for its type, an artifact key outside the job's results
(:func:`~services.common.storage.check_result_key`). Accepted events go to
``jobs.{tenant}.{job_id}.{event}`` with ``Nats-Msg-Id`` = event id, all published at once and
acknowledged together, so a resent event is stored once (within the JOBS duplicate window) and
counted in ``duplicates``. An ending (``job.succeeded``, ``job.failed``) is stored only while the job
has no ``job.canceled``: one that comes after a cancel is not stored and counts as a duplicate (the
job's end is stored), however late it comes. They go out on the connection of the worker role's NATS user
(``ingest_nats_user``) where one is set: the gateway's own user may not publish a worker's events.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from nats.errors import Error as NatsError
from nats.js.api import PubAck
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from contracts.envelope import EventEnvelope
from contracts.event_ids import is_worker_event_id, worker_event_prefix
from contracts.events.jobs import JobArtifactPayload, JobSucceededPayload
from contracts.events.registry import EventType, job_event_name, parse_payload
from contracts.events.sessions import SessionSnapshotPayload
from contracts.ids import ID_PATTERN
from services.common.auth.ingest_tokens import IngestClaims, verify_ingest_token
from services.common.auth.tokens import TokenExpiredError, TokenInvalidError
from services.common.http.auth import forbidden, unauthorized
from services.common.http.problem import ProblemError, field_error, problem_responses, unprocessable
from services.common.nats.publish import publish_event_async, publish_fenced
from services.common.storage import InvalidKeyError, check_result_key, results_prefix
from services.gateway.deps import StateDep

router = APIRouter(prefix="/v1/internal", tags=["internal"])
PUBLISH_TIMEOUT_S = 10.0

ENDINGS = frozenset({EventType.JOB_SUCCEEDED, EventType.JOB_FAILED})
"""A worker's endings of its attempt: not stored once the job was canceled."""
WORKER_EVENT_TYPES: frozenset[EventType] = frozenset(
    {
        EventType.JOB_STARTED,
        EventType.JOB_PROGRESS,
        EventType.JOB_LOG,
        EventType.JOB_ARTIFACT,
        EventType.JOB_HEARTBEAT,
        EventType.JOB_STAGE,
        EventType.JOB_SUCCEEDED,
        EventType.JOB_FAILED,
        EventType.SESSION_SNAPSHOT,
        EventType.SESSION_RESULT,
        EventType.SESSION_ALERT,
        EventType.SESSION_READY,
        EventType.SESSION_RESUMED,
    }
)
"""What a worker may report; the lifecycle events (created, queued, ...) are the platform's own."""


class IngestBatch(BaseModel):
    """Several events of one attempt, published in order."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventEnvelope] = Field(min_length=1, max_length=10_000)


class IngestResult(BaseModel):
    """``accepted``: events JetStream acknowledged; ``duplicates``: how many of them it already had."""

    model_config = ConfigDict(extra="forbid")

    accepted: int
    duplicates: int


def _body_kind(value: Any) -> str:
    """``batch`` for ``{"events": [...]}``, else ``event``: picks the union member to validate."""
    return "batch" if isinstance(value, IngestBatch) or (isinstance(value, dict) and "events" in value) else "event"


IngestBody = Annotated[
    Annotated[EventEnvelope, Tag("event")] | Annotated[IngestBatch, Tag("batch")],
    Discriminator(_body_kind),
    Body(description="One event envelope, or {'events': [...]}."),
]

_bearer = HTTPBearer(auto_error=False, description="A job-scoped ingest token minted by the dispatcher.")


async def ingest_claims(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> IngestClaims:
    """The claims of a valid ``Authorization: Bearer <ingest token>``; 401 otherwise."""
    if credentials is None:
        raise unauthorized("An ingest token is required: send 'Authorization: Bearer <token>'.")
    secret = state.settings.ingest_token_secret.get_secret_value().encode()
    try:
        return verify_ingest_token(secret, credentials.credentials)
    except TokenExpiredError:
        raise unauthorized("The ingest token has expired.") from None
    except TokenInvalidError:
        raise unauthorized("The ingest token is invalid.") from None


Located = list[tuple[tuple[str | int, ...], EventEnvelope]]


def _check(events: Located, claims: IngestClaims, storage_prefix: str) -> None:
    """403 for an event outside the token's scope; 422 for an id, type, payload or artifact a worker may not send."""
    scope = (("tenant", claims.tenant), ("job_id", claims.job_id), ("attempt", claims.attempt))
    for loc, event in events:
        for name, want in scope:
            if (got := getattr(event, name)) != want:
                raise ProblemError(
                    403,
                    f"Event {event.id} has {name} {got!r}; the ingest token is for {want!r}.",
                    errors=[field_error((*loc, name), f"must be {want!r}", "forbidden")],
                )
    errors: list[dict[str, Any]] = []
    for loc, event in events:
        if not is_worker_event_id(event.id, claims.job_id, claims.attempt):
            prefix = worker_event_prefix(claims.job_id, claims.attempt)
            errors.append(field_error((*loc, "id"), f"a worker event id is {prefix}<letters, digits, _ or ->"))
        if event.type not in WORKER_EVENT_TYPES:
            allowed = ", ".join(sorted(WORKER_EVENT_TYPES))
            errors.append(field_error((*loc, "type"), f"workers may send only {allowed}"))
            continue
        try:
            payload = parse_payload(event)
        except ValidationError as exc:
            errors += [field_error((*loc, "data", *e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
            continue
        errors += _foreign_artifacts((*loc, "data"), payload, claims, storage_prefix)
    if errors:
        raise unprocessable("Some events may not be ingested.", *errors)


def _foreign_artifacts(
    loc: tuple[str | int, ...], payload: BaseModel, claims: IngestClaims, storage_prefix: str
) -> list[dict[str, Any]]:
    """422 errors for each artifact key outside the job's results (``{prefix}results/{tenant}/{job}/``)."""
    if isinstance(payload, JobArtifactPayload):
        located = [((*loc, "key"), payload.key)]
    elif isinstance(payload, JobSucceededPayload):
        located = [((*loc, "artifacts", i, "key"), a.key) for i, a in enumerate(payload.artifacts)]
    elif isinstance(payload, SessionSnapshotPayload):
        located = [((*loc, "artifact", "key"), payload.artifact.key)]
    else:
        return []
    errors = []
    for at, key in located:
        try:
            check_result_key(storage_prefix, claims.tenant, claims.job_id, key)
        except InvalidKeyError:
            where = results_prefix(storage_prefix, claims.tenant, claims.job_id)
            errors.append(field_error(at, f"an artifact of this job is stored under {where!r}"))
    return errors


@router.post(
    "/jobs/{job_id}/events",
    status_code=202,
    summary="Ingest a worker's job events",
    responses=problem_responses(401, 403, 413, 422, 503),
)
async def ingest_events(
    job_id: Annotated[str, Path(description="The job the token was minted for.", pattern=ID_PATTERN.pattern)],
    body: IngestBody,
    claims: Annotated[IngestClaims, Depends(ingest_claims)],
    state: StateDep,
) -> IngestResult:
    """Publish one event or a batch of one job attempt's events, each once (``Nats-Msg-Id``).

    Auth: ``Authorization: Bearer <ingest token>`` (not an API key). 401: no, bad or expired token;
    403: the token is for another job, or an event names another tenant, job or attempt; 422: a
    time without a timezone, an id not of the form ``w-{job_id}-a{attempt}-{suffix}``, a type
    workers may not send (created, queued, dispatched, retrying, cancel_*, canceled), invalid data,
    an artifact key outside ``{storage prefix}results/{tenant}/{job_id}/``, or more than
    ``ingest_max_events`` events. Nothing is published unless every event passes. An ending
    (``job.succeeded``, ``job.failed``) after the job's ``job.canceled`` is not stored and counts as a
    duplicate.
    """
    if job_id != claims.job_id:
        raise forbidden(f"The ingest token is for job {claims.job_id!r}, not {job_id!r}.")
    if isinstance(body, IngestBatch):
        located: Located = [(("body", "events", i), event) for i, event in enumerate(body.events)]
    else:
        located = [(("body",), body)]
    if len(located) > (limit := state.settings.ingest_max_events):
        raise unprocessable("Too many events.", field_error(("body", "events"), f"at most {limit} per request"))
    _check(located, claims, state.settings.storage_prefix)
    events = [event for _, event in located]
    subjects, js = state.subjects, state.ingest_js or state.js
    canceled = subjects.stored_job_event(claims.tenant, claims.job_id, "canceled")  # the fence: as JOBS stores it
    futures: list[asyncio.Future[Any]] = []
    endings: list[PubAck | None] = []
    try:
        for event in events:
            subject = subjects.job_event(claims.tenant, claims.job_id, job_event_name(event.type))
            if event.type in ENDINGS:  # stored only while the job has no job.canceled; awaited, as
                # publish_async never completes the future of a refused publish
                ending = publish_fenced(js, subject, event, (canceled, 0))
                endings.append(await asyncio.wait_for(ending, PUBLISH_TIMEOUT_S))
            else:
                futures.append(await publish_event_async(js, subject, event))
        acks = await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_S)
    except (NatsError, TimeoutError) as exc:
        for future in futures:
            future.cancel()
        raise ProblemError(
            503,
            f"The event log did not accept the events ({type(exc).__name__}); retry.",
            headers={"Retry-After": "1"},
        ) from None
    acks += [ack for ack in endings if ack is not None]
    refused = sum(ack is None for ack in endings)  # the job was canceled first: its end is stored
    duplicates = sum(1 for ack in acks if ack.duplicate) + refused
    return IngestResult(accepted=len(acks) + refused, duplicates=duplicates)
