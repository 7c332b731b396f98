"""Webhook endpoints (``/v1/webhooks``) and checking a delivery's Standard Webhooks signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import standardwebhooks
from standardwebhooks.webhooks import EmptyWebhookSecretError

from gpurelay_client._core import Flow, Request, call, segment, send
from gpurelay_client._errors import WebhookVerificationError
from gpurelay_client._models import (
    DeliveryList,
    EventEnvelope,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
    WebhookList,
)


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> EventEnvelope:
    """The delivery's event when ``webhook-signature`` signs ``webhook-id``, ``webhook-timestamp`` (within
    5 minutes of now) and ``body`` (the raw bytes, before any JSON parsing) with ``secret`` (``whsec_...``);
    else :class:`WebhookVerificationError`. A delivery is retried with the same ``webhook-id``: dedupe on it."""
    try:
        text = body.decode("utf-8", "strict") if isinstance(body, bytes) else body
        payload = standardwebhooks.Webhook(secret).verify(text, {k.lower(): v for k, v in headers.items()})
    except standardwebhooks.WebhookVerificationError as exc:
        raise WebhookVerificationError(str(exc)) from None
    except (ValueError, TypeError, EmptyWebhookSecretError) as exc:  # malformed
        raise WebhookVerificationError(f"malformed signature headers or secret: {exc}") from None
    return EventEnvelope.model_validate(payload)


def create_flow(url: str, events: Sequence[str], description: str, retries: int) -> Flow[WebhookEndpointWithSecret]:
    """``POST /v1/webhooks``: the endpoint with its signing secret (shown once)."""
    body: dict[str, Any] = {"url": url, "events": list(events), "description": description}
    return call(Request("POST", "/v1/webhooks", json=body, retryable=False), WebhookEndpointWithSecret, retries)


def list_flow(retries: int) -> Flow[WebhookList]:
    """``GET /v1/webhooks``."""
    return call(Request("GET", "/v1/webhooks"), WebhookList, retries)


def get_flow(endpoint_id: str, retries: int) -> Flow[WebhookEndpoint]:
    """``GET /v1/webhooks/{id}``."""
    return call(Request("GET", f"/v1/webhooks/{segment(endpoint_id)}"), WebhookEndpoint, retries)


def delete_flow(endpoint_id: str, retries: int) -> Flow[None]:
    """``DELETE /v1/webhooks/{id}``."""
    yield from send(Request("DELETE", f"/v1/webhooks/{segment(endpoint_id)}"), retries)


def deliveries_flow(endpoint_id: str, limit: int, retries: int) -> Flow[DeliveryList]:
    """``GET /v1/webhooks/{id}/deliveries``: the latest deliveries and their attempts."""
    request = Request("GET", f"/v1/webhooks/{segment(endpoint_id)}/deliveries", params={"limit": limit})
    return call(request, DeliveryList, retries)
