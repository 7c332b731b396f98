"""CORS for every gpurelay app: the global allowlist (``GPURELAY_CORS_ORIGINS``) plus each tenant's own
origins (KV ``tenant_cors``, :class:`~services.common.http.tenant_origins.TenantOrigins`).

A request that names its tenant (a scoped token as ``Authorization: Bearer`` or ``?token=``, or an API
key) is answered for the global list and that tenant's origins. A request that names none, such as a
browser's preflight (``OPTIONS`` carries no ``Authorization``), is answered for the global list and the
origins of every tenant: a preflight only says a request may be sent; the request itself must carry a
credential, and its answer is readable only from the global list or its own tenant's origins.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.datastructures import Headers, QueryParams
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.auth.key_cache import CredentialRefusedError, KeyCache
from services.common.http.tenant_origins import TenantOrigins

Identify = Callable[[FastAPI, str], Awaitable[str | None]]
"""The tenant a credential names (``None``: it names none, or is not valid)."""
_extra: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("gpurelay_cors_extra", default=frozenset())
METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS"]
HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "Gpurelay-Pose"]


def credential_of(headers: Headers, query: QueryParams) -> str | None:
    """The bearer credential of a request (its header, else ``?token=``)."""
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    return query.get("token") or None


class TenantCorsMiddleware(CORSMiddleware):
    """Starlette's CORS, whose allowed origins also hold the tenant's (or, unnamed, every tenant's)."""

    def __init__(self, app: ASGIApp, origins: list[str], host: FastAPI, identify: Identify) -> None:
        super().__init__(
            app, allow_origins=origins, allow_methods=METHODS, allow_headers=HEADERS,
            expose_headers=["Location", "Retry-After", "ETag"], max_age=600,
        )  # fmt: skip
        self.host, self.identify = host, identify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "origin" not in Headers(scope=scope) or self.allow_all_origins:
            await super().__call__(scope, receive, send)
            return
        tenants: TenantOrigins | None = getattr(self.host.state, "tenant_origins", None)
        extra: frozenset[str] = frozenset()
        if tenants is not None:
            credential = credential_of(Headers(scope=scope), QueryParams(scope.get("query_string", b"")))
            tenant = await self.identify(self.host, credential) if credential else None
            extra = tenants.of(tenant)
        reset = _extra.set(extra)
        try:
            await super().__call__(scope, receive, send)
        finally:
            _extra.reset(reset)

    def is_allowed_origin(self, origin: str) -> bool:
        return super().is_allowed_origin(origin) or origin in _extra.get()


def identify_with(cache_of: Callable[[FastAPI], KeyCache | None]) -> Identify:
    """An :data:`Identify` through the app's key cache (an API key or a scoped token whose key lives)."""

    async def identify(app: FastAPI, credential: str) -> str | None:
        cache = cache_of(app)
        if cache is None:
            return None
        try:
            return (await cache.authenticate(credential)).tenant
        except CredentialRefusedError:
            return None

    return identify


def install_cors(app: FastAPI, origins: list[str], identify: Identify | None = None) -> None:
    """The global allowlist from settings (``*`` is refused outside dev by the settings themselves), and the
    tenants' own origins once the lifespan sets ``app.state.tenant_origins`` (with ``identify``)."""

    async def nobody(_: FastAPI, __: str) -> str | None:
        return None

    app.add_middleware(TenantCorsMiddleware, origins=origins, host=app, identify=identify or nobody)
