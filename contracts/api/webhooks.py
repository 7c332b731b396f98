"""Webhook endpoint API bodies (``/v1/webhooks``) and the endpoint record kept in KV ``webhooks``.

The gateway writes one :class:`WebhookRecord` per endpoint under the KV key
``{tenant}.{endpoint_id}``; the notifier reads it to deliver events and updates it (with
compare-and-set) to disable an endpoint. The signing secret (``whsec_`` + base64 of 32 random
bytes, the Standard Webhooks format) is stored in the record, since signing needs it, and shown to
the client only in :class:`WebhookEndpointWithSecret`, at creation and rotation.

Rotation keeps the previous secret valid until ``previous_secret_expires_at``: until then the
notifier signs each delivery with both secrets (Standard Webhooks allows several space-separated
signatures), so receivers can switch without dropping deliveries.
"""

from __future__ import annotations

import base64
import fnmatch
import re
import secrets
from datetime import datetime

from pydantic import AwareDatetime, ConfigDict, Field, field_validator, model_validator

from contracts.base import Contract, JsonValue
from contracts.events.registry import EventType
from contracts.ids import ResourceId, TenantId

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES = 32
MAX_URL_LENGTH = 2048
MAX_GRACE_S = 7 * 24 * 3600
DEFAULT_GRACE_S = 24 * 3600
_GLOB = re.compile(r"^[a-z_*]+(\.[a-z_*]+)*$")
_BODY = ConfigDict(extra="forbid")


def new_webhook_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def validate_event_globs(globs: list[str]) -> list[str]:
    """``globs`` without repeats, each a type or glob (``job.*``) matching at least one event type."""
    unique: list[str] = []
    for glob in globs:
        if len(glob) > 64 or not _GLOB.fullmatch(glob):
            raise ValueError(f"event filter {glob!r} must be an event type or a glob such as 'job.*'")
        if not any(fnmatch.fnmatchcase(t.value, glob) for t in EventType):
            raise ValueError(f"event filter {glob!r} matches no event type")
        if glob not in unique:
            unique.append(glob)
    return unique


def matches_events(globs: list[str] | tuple[str, ...], event_type: str) -> bool:
    """Whether an event of ``event_type`` matches any of ``globs``."""
    return any(fnmatch.fnmatchcase(event_type, glob) for glob in globs)


_EVENTS_DOC = "Event types or globs, e.g. ['job.*'] or ['job.succeeded', 'job.failed']."


class WebhookCreate(Contract):
    """Subscribe a URL to the tenant's events."""

    model_config = _BODY

    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH, description="Where to POST: https://...")
    events: list[str] = Field(default_factory=lambda: ["job.*"], min_length=1, max_length=32, description=_EVENTS_DOC)
    description: str = Field(default="", max_length=500)

    @field_validator("events")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        return validate_event_globs(value)


class WebhookUpdate(Contract):
    """Change an endpoint; fields left out stay as they are. A new URL is checked again."""

    model_config = _BODY

    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH)
    events: list[str] | None = Field(default=None, min_length=1, max_length=32, description=_EVENTS_DOC)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(default=None, description="false pauses deliveries; true resumes them.")

    @field_validator("events")
    @classmethod
    def _globs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else validate_event_globs(value)

    @model_validator(mode="after")
    def _something(self) -> WebhookUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one of url, events, description, enabled")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may not be null")
        return self


class SecretRotation(Contract):
    """How long the previous secret keeps signing deliveries after a rotation (0: stop at once)."""

    model_config = _BODY

    grace_period_s: int = Field(default=DEFAULT_GRACE_S, ge=0, le=MAX_GRACE_S)


class WebhookEndpoint(Contract):
    """An endpoint as clients see it: never its secret."""

    model_config = _BODY

    id: ResourceId
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(default=None, description="Why deliveries stopped, if they did.")
    previous_secret_expires_at: datetime | None = Field(
        default=None, description="Until then the previous secret also signs deliveries."
    )
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpoint):
    """An endpoint with its signing secret: returned once, by create and by rotate-secret."""

    secret: str = Field(description="The Standard Webhooks signing secret, whsec_... Store it now.")


class WebhookList(Contract):
    """The tenant's endpoints, oldest first."""

    model_config = _BODY

    data: list[WebhookEndpoint]


class WebhookRecord(Contract):
    """KV ``webhooks`` ``{tenant}.{id}``. Unknown fields are kept, so a newer writer loses nothing."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, JsonValue] = Field(init=False)

    id: ResourceId
    tenant: TenantId
    url: str
    events: list[str]
    description: str = ""
    enabled: bool = True
    secret: str
    previous_secret: str | None = None
    previous_secret_expires_at: AwareDatetime | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    disabled_reason: str | None = None

    def matches(self, event_type: str) -> bool:
        """Whether an event of ``event_type`` goes to this endpoint (enabled or not)."""
        return matches_events(self.events, event_type)

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets to sign with at ``now``: the current one, and the previous one in its grace."""
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and now < expires:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def public(self) -> WebhookEndpoint:
        """What clients see."""
        return WebhookEndpoint.model_validate(self.model_dump(include=set(WebhookEndpoint.model_fields)))

    def with_secret(self) -> WebhookEndpointWithSecret:
        """What create and rotate-secret return."""
        fields = set(WebhookEndpointWithSecret.model_fields)
        return WebhookEndpointWithSecret.model_validate(self.model_dump(include=fields))
