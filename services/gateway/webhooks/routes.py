"""``/v1/webhooks``: the tenant's webhook endpoints (the notifier delivers to them).

Each endpoint is a :class:`~contracts.api.webhooks.WebhookRecord` in KV ``webhooks`` under
``{tenant}.{endpoint_id}``; every change is a compare-and-set on the entry's revision, so a
concurrent notifier update (auto-disable) is never lost. URLs pass the SSRF guard
(:mod:`services.common.ssrf`) at creation and whenever a PATCH changes them: a refused URL is a 422
naming ``url`` with the reason. The ``whsec_`` secret is returned by create and rotate-secret only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Path, Response
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.api.webhooks import (
    SecretRotation,
    WebhookCreate,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
    WebhookList,
    WebhookRecord,
    WebhookUpdate,
    new_webhook_secret,
)
from contracts.ids import ID_PATTERN, InvalidIdError, new_id, tenant_key, tenant_key_filter
from services.common.http.problem import ProblemError, field_error, problem_responses, unprocessable
from services.common.nats.kv import kv_entries
from services.common.nats.kv_writes import kv_update
from services.common.ssrf import SsrfError, check_url
from services.gateway.deps import KeyDep, StateDep
from services.gateway.state import GatewayState

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
CAS_ATTEMPTS = 5
EndpointId = Annotated[str, Path(description="The endpoint id, whe_...", pattern=ID_PATTERN.pattern)]


async def checked_url(state: GatewayState, url: str) -> str:
    """``url`` when the SSRF guard admits it; else a 422 naming ``url``."""
    settings = state.settings
    try:
        await check_url(url, settings.webhook_allow_hosts, allow_http=settings.webhook_allow_http)
    except SsrfError as exc:
        raise unprocessable(
            f"The webhook URL is not allowed: {exc.reason}.", field_error(("body", "url"), exc.reason)
        ) from None
    return url


def _key(tenant: str, endpoint_id: str) -> str:
    try:
        return tenant_key(tenant, endpoint_id)
    except InvalidIdError:
        raise _not_found(endpoint_id) from None


def _not_found(endpoint_id: str) -> ProblemError:
    return ProblemError(404, f"No webhook endpoint {endpoint_id!r}.")


async def load_endpoint(kv: KeyValue, tenant: str, endpoint_id: str) -> tuple[WebhookRecord, int]:
    """The tenant's endpoint record and its revision; 404 for anything else."""
    try:
        entry = await kv.get(_key(tenant, endpoint_id))
    except KeyNotFoundError:
        raise _not_found(endpoint_id) from None
    if not entry.value or entry.revision is None:
        raise _not_found(endpoint_id)
    record = WebhookRecord.model_validate_json(entry.value)
    if record.tenant != tenant:
        raise _not_found(endpoint_id)
    return record, entry.revision


async def _mutate(
    kv: KeyValue, tenant: str, endpoint_id: str, change: Callable[[WebhookRecord], WebhookRecord]
) -> WebhookRecord:
    """Apply ``change`` with compare-and-set, retrying on a concurrent write; 409 when it keeps losing."""
    for _ in range(CAS_ATTEMPTS):
        record, revision = await load_endpoint(kv, tenant, endpoint_id)
        updated = change(record).model_copy(update={"updated_at": datetime.now(UTC)})
        try:
            await kv_update(kv, _key(tenant, endpoint_id), updated.model_dump_json().encode(), revision)
        except KeyWrongLastSequenceError:
            continue
        return updated
    raise ProblemError(409, "The endpoint changed concurrently; try again.")


async def _records(kv: KeyValue, tenant: str) -> list[WebhookRecord]:
    """Every endpoint of ``tenant``, oldest first (ids are time-ordered)."""
    records = [
        WebhookRecord.model_validate_json(item.value) for item in await kv_entries(kv, tenant_key_filter(tenant))
    ]
    return sorted((r for r in records if r.tenant == tenant), key=lambda r: r.id)


@router.post(
    "",
    status_code=201,
    summary="Create a webhook endpoint",
    responses=problem_responses(401, 403, 409, 422),
)
async def create_webhook(
    body: WebhookCreate, principal: KeyDep, state: StateDep, response: Response
) -> WebhookEndpointWithSecret:
    """Subscribe a URL to the tenant's events (globs such as ``job.*``).

    The response carries the ``whsec_`` signing secret: it is shown this once. A URL the SSRF guard
    refuses (private, loopback, link-local... addresses; http to a public host) is a 422.
    409 when the tenant already has ``webhook_max_endpoints`` endpoints.
    """
    url = await checked_url(state, body.url)
    if len(await _records(state.kv.webhooks, principal.tenant)) >= state.settings.webhook_max_endpoints:
        raise ProblemError(409, f"At most {state.settings.webhook_max_endpoints} endpoints per tenant.")
    now = datetime.now(UTC)
    record = WebhookRecord(
        id=new_id("whe"),
        tenant=principal.tenant,
        url=url,
        events=body.events,
        description=body.description,
        enabled=True,
        secret=new_webhook_secret(),
        created_at=now,
        updated_at=now,
    )
    await state.kv.webhooks.create(tenant_key(record.tenant, record.id), record.model_dump_json().encode())
    response.headers["Location"] = f"/v1/webhooks/{record.id}"
    return record.with_secret()


@router.get("", summary="List webhook endpoints", responses=problem_responses(401, 403))
async def list_webhooks(principal: KeyDep, state: StateDep) -> WebhookList:
    """The tenant's endpoints, oldest first, without secrets."""
    return WebhookList(data=[r.public() for r in await _records(state.kv.webhooks, principal.tenant)])


@router.get("/{endpoint_id}", summary="Get a webhook endpoint", responses=problem_responses(401, 403, 404, 422))
async def get_webhook(endpoint_id: EndpointId, principal: KeyDep, state: StateDep) -> WebhookEndpoint:
    """One endpoint, without its secret; another tenant's id is a 404."""
    record, _ = await load_endpoint(state.kv.webhooks, principal.tenant, endpoint_id)
    return record.public()


@router.patch(
    "/{endpoint_id}", summary="Update a webhook endpoint", responses=problem_responses(401, 403, 404, 409, 422)
)
async def update_webhook(
    endpoint_id: EndpointId, body: WebhookUpdate, principal: KeyDep, state: StateDep
) -> WebhookEndpoint:
    """Enable or disable an endpoint, or change its events, description or URL (checked again)."""
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes:
        await checked_url(state, changes["url"])
    if changes.get("enabled") is not None:
        changes["disabled_reason"] = None if changes["enabled"] else "disabled through the API"

    def change(record: WebhookRecord) -> WebhookRecord:
        return record.model_copy(update=changes)

    return (await _mutate(state.kv.webhooks, principal.tenant, endpoint_id, change)).public()


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a webhook endpoint",
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_webhook(endpoint_id: EndpointId, principal: KeyDep, state: StateDep) -> Response:
    """Remove the endpoint; no further deliveries are made to it."""
    await load_endpoint(state.kv.webhooks, principal.tenant, endpoint_id)
    await state.kv.webhooks.delete(_key(principal.tenant, endpoint_id))
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    summary="Rotate a webhook endpoint's signing secret",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def rotate_secret(
    endpoint_id: EndpointId,
    principal: KeyDep,
    state: StateDep,
    body: Annotated[SecretRotation | None, Body()] = None,
) -> WebhookEndpointWithSecret:
    """A new ``whsec_`` secret, shown this once.

    The previous secret keeps signing deliveries (beside the new one) for ``grace_period_s``
    seconds (default 24 h; 0 drops it at once), so a receiver can switch without missing any.
    """
    grace = (body or SecretRotation()).grace_period_s
    secret = new_webhook_secret()

    def change(record: WebhookRecord) -> WebhookRecord:
        expires = datetime.now(UTC) + timedelta(seconds=grace) if grace else None
        previous = record.secret if grace else None
        return record.model_copy(
            update={"secret": secret, "previous_secret": previous, "previous_secret_expires_at": expires}
        )

    return (await _mutate(state.kv.webhooks, principal.tenant, endpoint_id, change)).with_secret()
