"""``/v1/webhooks/{id}/dead-letters``: the deliveries an endpoint never took, and their redrive.

``{id}`` is a KV endpoint of the tenant or a job's webhook ``jobhook-{job_id}`` (a job of the
tenant with a ``spec.webhook``); anything else, another tenant's included, is a 404. The reading
and the redrive are :mod:`services.gateway.webhooks.dead_letters`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from nats.js.errors import KeyNotFoundError
from pydantic import ValidationError

from contracts.api.dead_letters import (
    PAGE_DEFAULT,
    PAGE_MAX,
    REDRIVE_MAX,
    DeadLetterDetail,
    DeadLetterPage,
    RedriveRequest,
    RedriveResult,
)
from contracts.ids import tenant_key
from contracts.job_record import JobRecord
from services.common.http.problem import ProblemError, problem_responses
from services.common.webhook_queue import JOB_HOOK_PREFIX
from services.gateway.deps import KeyDep, StateDep
from services.gateway.state import GatewayState
from services.gateway.webhooks.dead_letters import DeadLetters, Target
from services.gateway.webhooks.routes import EndpointId, load_endpoint

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
DeadLetterId = Annotated[int, Path(ge=1, le=2**63, description="The dead letter's id (its DEADLETTER sequence).")]


async def _target(state: GatewayState, tenant: str, endpoint_id: str) -> Target:
    """The tenant's endpoint (or job webhook) ``endpoint_id``; 404 otherwise."""
    if not endpoint_id.startswith(JOB_HOOK_PREFIX):
        endpoint, _ = await load_endpoint(state.kv.webhooks, tenant, endpoint_id)
        return Target(tenant, endpoint_id, enabled=endpoint.enabled)
    job_id = endpoint_id.removeprefix(JOB_HOOK_PREFIX)
    try:
        entry = await state.kv.jobs.get(tenant_key(tenant, job_id))
        record = JobRecord.model_validate_json(entry.value or b"")
    except (KeyNotFoundError, ValidationError, ValueError):
        raise ProblemError(404, f"No webhook endpoint {endpoint_id!r}.") from None
    if record.tenant != tenant or record.spec.webhook is None:
        raise ProblemError(404, f"No webhook endpoint {endpoint_id!r}.")
    return Target(tenant, endpoint_id, enabled=True, url=str(record.spec.webhook.url))


def _dead_letters(state: GatewayState) -> DeadLetters:
    return DeadLetters(state.js, state.nc, state.subjects)


@router.get(
    "/{endpoint_id}/dead-letters",
    summary="List an endpoint's dead letters",
    responses=problem_responses(401, 403, 404, 422),
)
async def list_dead_letters(
    endpoint_id: EndpointId,
    principal: KeyDep,
    state: StateDep,
    after: Annotated[int, Query(ge=0, le=2**63, description="List the dead letters after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="At most this many.")] = PAGE_DEFAULT,
) -> DeadLetterPage:
    """Deliveries that exhausted their retries (or that a full queue refused), oldest first, paged
    by ``after`` (the ``next_after`` of the previous page)."""
    target = await _target(state, principal.tenant, endpoint_id)
    return await _dead_letters(state).page(target, after, limit)


@router.get(
    "/{endpoint_id}/dead-letters/{dead_id}",
    summary="Get one dead letter with its event",
    responses=problem_responses(401, 403, 404, 422),
)
async def get_dead_letter(
    endpoint_id: EndpointId, dead_id: DeadLetterId, principal: KeyDep, state: StateDep
) -> DeadLetterDetail:
    """One dead letter and the event a redrive would deliver (``event`` null: JOBS no longer holds it)."""
    target = await _target(state, principal.tenant, endpoint_id)
    found = await _dead_letters(state).get(target, dead_id)
    if found is None:
        raise ProblemError(404, f"No dead letter {dead_id} of webhook endpoint {endpoint_id!r}.")
    return found


@router.post(
    "/{endpoint_id}/dead-letters/redrive",
    summary="Deliver dead letters again",
    responses=problem_responses(401, 403, 404, 422),
)
async def redrive_dead_letters(
    endpoint_id: EndpointId, body: RedriveRequest, principal: KeyDep, state: StateDep
) -> RedriveResult:
    """Put dead letters (``ids``, or ``all``: the oldest 500) back into the endpoint's delivery queue.

    Each keeps its ``webhook-id`` and goes through the normal signed, retried delivery; it stops
    being a dead letter, and gets a new one if it fails again. ``remaining`` > 0 after ``all``: call
    again. A disabled endpoint (``endpoint_enabled`` false) holds them until it is enabled.
    """
    target = await _target(state, principal.tenant, endpoint_id)
    return await _dead_letters(state).redrive(target, body.ids, REDRIVE_MAX)
