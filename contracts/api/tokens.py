"""``POST /v1/tokens``: a short-lived scoped token, minted with an API key by an app's server for a
browser (or a device) that must never hold the key. The scopes, and the routes each opens, are listed in
``docs/api.md``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field, field_validator

from contracts.base import Contract
from contracts.ids import ResourceId, SubjectId
from contracts.specs.jobs import JobKind


class Scope(StrEnum):
    """What a scoped token may do."""

    UPLOADS_WRITE = "uploads:write"
    JOBS_WRITE = "jobs:write"
    JOBS_READ = "jobs:read"
    SESSIONS_WRITE = "sessions:write"
    EVENTS_READ = "events:read"
    ROBOTS_WRITE = "robots:write"
    ROBOTS_READ = "robots:read"


KIND_SCOPES = frozenset({Scope.JOBS_WRITE, Scope.SESSIONS_WRITE})
"""The scopes ``kinds`` narrows."""
ROBOT_SCOPES = frozenset({Scope.ROBOTS_WRITE, Scope.ROBOTS_READ})
"""The scopes ``robot_id`` narrows."""


class TokenCreate(Contract):
    """What the token may do, for whom, and how long it lives."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope), description="At least one scope.")
    kinds: list[JobKind] | None = Field(
        default=None, min_length=1, max_length=len(JobKind), description="Only jobs and sessions of these kinds."
    )
    subject: SubjectId | None = Field(
        default=None, description="The app's end user: what the token creates records it; it sees only theirs."
    )
    robot_id: ResourceId | None = Field(default=None, description="The one robot robots:write / robots:read reach.")
    ttl_s: int | None = Field(
        default=None, ge=1, description="Lifetime in seconds (default 900; at most the gateway's token_max_ttl_s)."
    )

    @field_validator("scopes", "kinds")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))


class TokenOut(Contract):
    """A minted token: send it as ``Authorization: Bearer``, or as ``?token=`` on SSE and WebSockets."""

    model_config = ConfigDict(extra="forbid")

    token: str
    expires_at: datetime
    scopes: list[Scope]
    kinds: list[JobKind] | None = None
    subject: SubjectId | None = None
    robot_id: str | None = None
