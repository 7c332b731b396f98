"""The notifier's HTTP routes: three SSE streams and the webhook deliveries view.

Concurrent streams are capped per tenant (:class:`~services.notifier.sse.slots.StreamSlots`): one over
the cap is a 429 before any consumer is made. The app state comes in as ``StateDep``
(:mod:`services.notifier.deps`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from contracts.ids import ID_PATTERN
from services.common.http.problem import field_error, problem_responses, unprocessable
from services.common.webhook_queue import JOB_HOOK_PREFIX
from services.notifier.auth import exists, header_principal, key_holder, not_found, reader, visible
from services.notifier.deps import StateDep
from services.notifier.sse.feed import Feed
from services.notifier.sse.hub import Key, job_key, tenant_key
from services.notifier.sse.slots import SlotEventSource
from services.notifier.sse.stream import Coalescer, Filters, frames
from services.notifier.sse.tap import Tap
from services.notifier.state import NotifierState
from services.notifier.webhooks.deliveries import DeliveryList

router = APIRouter()
MAX_RESUME_SEQ = 2**64 - 2
"""The largest sequence to resume after: JetStream sequences are uint64 and a stream resumes at ``after + 1``."""
After = Annotated[
    str | None,
    Query(
        description=f"Resume after this stream sequence (as Last-Event-ID): ASCII digits, 0 to {MAX_RESUME_SEQ}.",
        examples=["42"],
        json_schema_extra={"pattern": "^[0-9]{1,20}$"},  # documented; checked (with the bound) by _sequence
    ),
]
PingKind = Literal["comment", "event"]
Ping = Annotated[
    PingKind,
    Query(
        description="The keep-alive sent every GPURELAY_SSE_HEARTBEAT_S (15 s): an SSE comment, which an "
        "EventSource hides, or a `ping` event (data: the server's time, no id), by which a browser's client "
        "tells a connection that went silent from a quiet stream.",
    ),
]
SSE_DOC = {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."}


def _start_after(request: Request, after: str | None) -> int:
    """The sequence to resume after: ``Last-Event-ID`` wins over ``?after=``; 0 is the start.

    Both are checked here, before any stream starts: a bad one is a 422."""
    header = request.headers.get("last-event-id", "").strip()
    query = _sequence(after, ("query", "after")) if after is not None else 0
    return _sequence(header, ("header", "last-event-id")) if header else query


def _sequence(text: str, where: tuple[str, str]) -> int:
    """A stream sequence written as ASCII digits, at most :data:`MAX_RESUME_SEQ`."""
    value = text.strip()
    if value.isascii() and value.isdigit() and len(value) <= 20 and int(value) <= MAX_RESUME_SEQ:
        return int(value)
    message = f"A stream sequence: ASCII digits, 0 to {MAX_RESUME_SEQ}."
    raise unprocessable(f"{where[1]} is not a stream sequence.", field_error(where, message))


def _respond(
    state: NotifierState,
    key: Key,
    subjects: list[str],
    after: int,
    *,
    close_on_terminal: bool,
    ping: PingKind,
    filters: Filters | None = None,
) -> EventSourceResponse:
    s = state.settings
    release = state.streams.acquire(key[1])  # last before the response: nothing can fail in between
    feed: Feed | Tap
    if state.hub is not None:
        feed = Tap(state.hub, key, subjects, after, s.sse_buffer)
    else:
        feed = Feed(
            state.nc, state.js, s.ns.stream("JOBS"), subjects, after, s.sse_buffer, s.sse_pull_heartbeat_s,
            unavailable=state.nats_watch.failed,
        )  # fmt: skip
    stream = frames(
        feed,
        Coalescer(s.sse_progress_max_per_s),
        filters or Filters(),
        close_on_terminal=close_on_terminal,
        retry_ms=s.sse_retry_ms,
    )
    return SlotEventSource(
        stream,
        ping=s.sse_heartbeat_s,
        ping_message_factory=_ping_event if ping == "event" else None,
        send_timeout=s.sse_send_timeout_s,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        release=release,
    )


def _ping_event() -> ServerSentEvent:
    """A keep-alive an EventSource hands to its page (its data must not be empty for that)."""
    return ServerSentEvent(data=datetime.now(UTC).isoformat(), event="ping")


@router.get(
    "/v1/jobs/{job_id}/events",
    tags=["events"],
    response_class=EventSourceResponse,
    responses={200: SSE_DOC, **problem_responses(401, 403, 404, 429)},
)
async def job_events(
    request: Request, state: StateDep, job_id: Annotated[str, Path()], after: After = None, ping: Ping = "comment"
) -> EventSourceResponse:
    """One job's events: replayed from the start (or after ``Last-Event-ID``), then live; ends after
    the terminal event. Auth: an API key, or a token with ``events:read`` (the job's stream token in
    ``urls.events``, or one minted for the job's subject) as Bearer or ``?token=``."""
    if not ID_PATTERN.fullmatch(job_id):
        raise not_found("job", job_id)
    viewer = await reader(request, state.key_cache, job_id)
    tenant = viewer.tenant
    if not await visible(state.jobs, viewer, job_id):
        raise not_found("job", job_id)
    subject = state.settings.subjects.job_events(tenant, job_id)
    start = _start_after(request, after)
    return _respond(state, job_key(tenant, job_id), [subject], start, close_on_terminal=True, ping=ping)


@router.get(
    "/v1/sessions/{session_id}/events",
    tags=["events"],
    response_class=EventSourceResponse,
    responses={200: SSE_DOC, **problem_responses(401, 403, 404, 429)},
)
async def session_events(
    request: Request,
    state: StateDep,
    session_id: Annotated[str, Path()],
    after: After = None,
    ping: Ping = "comment",
) -> EventSourceResponse:
    """A live session's events (a session runs as a job of kind splat or vlm with the same id)."""
    viewer = await reader(request, state.key_cache, session_id)
    tenant = viewer.tenant
    if viewer.subject is not None:
        found = await visible(state.jobs, viewer, session_id)
    else:
        found = await exists(state.sessions, tenant, session_id) or await exists(state.jobs, tenant, session_id)
    if not found:
        raise not_found("session", session_id)
    subject = state.settings.subjects.job_events(tenant, session_id)
    key = job_key(tenant, session_id)
    return _respond(state, key, [subject], _start_after(request, after), close_on_terminal=True, ping=ping)


@router.get(
    "/v1/events",
    tags=["events"],
    response_class=EventSourceResponse,
    responses={200: SSE_DOC, **problem_responses(401, 403, 429)},
)
async def tenant_events(
    request: Request,
    state: StateDep,
    after: After = None,
    types: Annotated[list[str] | None, Query(description="Event types or globs, e.g. job.succeeded,job.*")] = None,
    kinds: Annotated[list[str] | None, Query(description="Job kinds, e.g. pose,nerf")] = None,
    ping: Ping = "comment",
) -> EventSourceResponse:
    """Every job and upload event of the caller's tenant, filtered, resumable; never ends.
    Auth: an API key, or a token with ``events:read`` not bound to a job or a subject (a dashboard page's
    feed token), as Bearer or ``?token=``."""
    tenant = (await reader(request, state.key_cache, None)).tenant
    s = state.settings.subjects
    filters = Filters(types=tuple(_split(types)), kinds=frozenset(_split(kinds)))
    subjects = [s.tenant_jobs(tenant), state.settings.ns.subject(f"uploads.{tenant}.>")]
    start = _start_after(request, after)
    return _respond(state, tenant_key(tenant), subjects, start, close_on_terminal=False, ping=ping, filters=filters)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


@router.get(
    "/v1/webhooks/{endpoint_id}/deliveries",
    tags=["webhooks"],
    response_model=DeliveryList,
    responses=problem_responses(401, 403, 404),
)
async def deliveries(
    request: Request,
    state: StateDep,
    endpoint_id: Annotated[str, Path()],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryList:
    """The endpoint's latest deliveries: attempts, last status code or error, next attempt.

    A job's own webhook (``spec.webhook``) is listed as endpoint ``jobhook-{job_id}``."""
    tenant = key_holder(await header_principal(request, state.key_cache)).tenant
    known = await exists(state.webhooks, tenant, endpoint_id)
    if not known and endpoint_id.startswith(JOB_HOOK_PREFIX):
        known = await exists(state.jobs, tenant, endpoint_id.removeprefix(JOB_HOOK_PREFIX))
    if not known:
        raise not_found("webhook endpoint", endpoint_id)
    return DeliveryList(data=await state.deliveries.list(tenant, endpoint_id, limit))
