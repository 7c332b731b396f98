"""``POST /v1/internal/jobs/{job_id}/events``: workers that cannot reach NATS post their events here.

Auth is a job-scoped ingest token (:mod:`services.common.ingest_tokens`, minted by the dispatcher
for one attempt of one job), not an API key. The whole request is checked before anything is
published: the token's job must be the path's (else 403), every event's tenant, job id and attempt
must be the token's (else 403), its type one a worker may emit and its data valid for that type
(else 422). Accepted events go to ``jobs.{tenant}.{job_id}.{event}`` with ``Nats-Msg-Id`` = event
id, all published at once and acknowledged together, so a resent event is stored once (within the
JOBS duplicate window) and counted in ``duplicates``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from nats.errors import Error as NatsError
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from contracts.envelope import EventEnvelope
from contracts.events import EventType, job_event_name, parse_payload
from contracts.ids import ID_PATTERN
from services.common.ingest_tokens import IngestClaims, verify_ingest_token
from services.common.tokens import TokenExpiredError, TokenInvalidError
from services.gateway.deps import StateDep
from services.gateway.errors import ProblemError, field_error, problem_responses, unprocessable

router = APIRouter(prefix="/v1/internal", tags=["internal"])
PUBLISH_TIMEOUT_S = 10.0

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


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def ingest_claims(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> IngestClaims:
    """The claims of a valid ``Authorization: Bearer <ingest token>``; 401 otherwise."""
    if credentials is None:
        raise _unauthorized("An ingest token is required: send 'Authorization: Bearer <token>'.")
    secret = state.settings.ingest_token_secret.get_secret_value().encode()
    try:
        return verify_ingest_token(secret, credentials.credentials)
    except TokenExpiredError:
        raise _unauthorized("The ingest token has expired.") from None
    except TokenInvalidError:
        raise _unauthorized("The ingest token is invalid.") from None


Located = list[tuple[tuple[str | int, ...], EventEnvelope]]


def _check(events: Located, claims: IngestClaims) -> None:
    """403 for an event outside the token's scope; 422 for a type or payload a worker may not send."""
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
        if event.type not in WORKER_EVENT_TYPES:
            allowed = ", ".join(sorted(WORKER_EVENT_TYPES))
            errors.append(field_error((*loc, "type"), f"workers may send only {allowed}"))
            continue
        try:
            parse_payload(event)
        except ValidationError as exc:
            errors += [field_error((*loc, "data", *e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
    if errors:
        raise unprocessable("Some events may not be ingested.", *errors)


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
    type workers may not send (created, queued, dispatched, retrying, cancel_*, canceled), invalid
    data, or more than ``ingest_max_events`` events. Nothing is published unless every event passes.
    """
    if job_id != claims.job_id:
        raise ProblemError(403, f"The ingest token is for job {claims.job_id!r}, not {job_id!r}.")
    if isinstance(body, IngestBatch):
        located: Located = [(("body", "events", i), event) for i, event in enumerate(body.events)]
    else:
        located = [(("body",), body)]
    if len(located) > (limit := state.settings.ingest_max_events):
        raise unprocessable("Too many events.", field_error(("body", "events"), f"at most {limit} per request"))
    _check(located, claims)
    events = [event for _, event in located]
    subjects = state.subjects
    futures: list[asyncio.Future[Any]] = []
    try:
        for event in events:
            subject = subjects.job_event(claims.tenant, claims.job_id, job_event_name(event.type))
            futures.append(
                await state.js.publish_async(subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.id})
            )
        acks = await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_S)
    except (NatsError, TimeoutError) as exc:
        for future in futures:
            future.cancel()
        raise ProblemError(
            503,
            f"The event log did not accept the events ({type(exc).__name__}); retry.",
            headers={"Retry-After": "1"},
        ) from None
    duplicates = sum(1 for ack in acks if ack.duplicate)
    return IngestResult(accepted=len(acks), duplicates=duplicates)
