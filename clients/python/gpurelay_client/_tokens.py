"""``POST /v1/tokens``: a short-lived token with scopes, for a browser or a device that must not hold
the API key (the answer is the generated :class:`~gpurelay_client._models.TokenOut`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gpurelay_client._core import Flow, Request, call
from gpurelay_client._models import TokenOut

CreatedToken = TokenOut
"""A minted token: pass ``token`` as ``Client(token=...)``, or as ``?token=`` where a browser cannot set headers."""


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
