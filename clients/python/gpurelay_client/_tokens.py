"""``POST /v1/tokens``: a short-lived token with scopes, for a browser or a device that must not hold
the API key. The route is added by the App API work; :class:`CreatedToken` is written from its
agreed answer, not generated (it is not in docs/openapi.json yet)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gpurelay_client._core import Flow, Request, call
from gpurelay_client._models import ApiModel


class CreatedToken(ApiModel):
    """A minted token: pass ``token`` as ``Client(token=...)`` or a socket's first ``{"auth": ...}``."""

    token: str
    expires_at: datetime
    scopes: list[str]
    kinds: list[str] | None = None
    subject: str | None = None


def create_flow(
    scopes: Sequence[str],
    kinds: Sequence[str] | None,
    subject: str | None,
    robot_id: str | None,
    ttl_s: int,
    retries: int,
) -> Flow[CreatedToken]:
    """Mint a token (not retried once sent: each call mints one)."""
    body: dict[str, Any] = {"scopes": list(scopes), "ttl_s": ttl_s}
    if kinds is not None:
        body["kinds"] = list(kinds)
    if subject is not None:
        body["subject"] = subject
    if robot_id is not None:
        body["robot_id"] = robot_id
    return call(Request("POST", "/v1/tokens", json=body, retryable=False), CreatedToken, retries)
