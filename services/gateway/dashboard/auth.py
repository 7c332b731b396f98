"""Who is looking at the dashboard: a signed session cookie made from an API key pasted once.

The cookie (``gpurelay_session``) is HttpOnly, SameSite=Strict, Secure on an ``https`` origin, and
signed and dated with itsdangerous under a key derived from the deployment's ``signing_secret``;
it holds the tenant, the key's id (never the key) and the session's CSRF token, and lives
``dashboard_session_ttl_s``. Each page checks the key is still unrevoked. A page gets a
:class:`Viewer`: the principal, the CSRF token its forms carry, a short-lived scoped API token of full
access (:func:`~services.common.auth.scoped.page_token`) its scripts send as ``Bearer``, and an
``events:read`` token for the tenant's SSE feed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from services.common.auth.apikeys import Principal
from services.common.auth.scoped import feed_token, page_token
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState

SESSION_COOKIE = "gpurelay_session"
LOGIN_CSRF_COOKIE = "gpurelay_login_csrf"
_SALT = "gpurelay.dashboard.session"


class SignInRequired(Exception):
    """The page needs a signed-in viewer: the app answers with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A state-changing form came without the CSRF token of its session: a 403 page."""


@dataclass(frozen=True)
class Viewer:
    """A signed-in tenant as one page sees it."""

    principal: Principal
    csrf: str
    token: str
    """A short-lived bearer token for the API (``dashboard_token_ttl_s``)."""
    feed_token: str
    """An ``events:read`` token that opens the tenant's SSE feed."""
    stream_idle_ms: int
    """How long a page's stream or socket may be silent before it is opened again (``dashboard_stream_idle_s``)."""

    @property
    def tenant(self) -> str:
        """The tenant every page is scoped to."""
        return self.principal.tenant


def _secret(settings: GatewaySettings) -> bytes:
    return settings.signing_secret.get_secret_value().encode()


def _serializer(settings: GatewaySettings) -> URLSafeTimedSerializer:
    key = hashlib.sha256(b"gpurelay dashboard cookie\n" + _secret(settings)).hexdigest()
    return URLSafeTimedSerializer(key, salt=_SALT)


def cookie_flags(settings: GatewaySettings) -> dict[str, Any]:
    """The attributes of every dashboard cookie."""
    return {"httponly": True, "samesite": "strict", "secure": settings.url.startswith("https://"), "path": "/"}


def session_cookie(settings: GatewaySettings, principal: Principal) -> str:
    """The signed, dated value of a new session's cookie (a fresh CSRF token inside)."""
    data = {"t": principal.tenant, "k": principal.key_id, "c": secrets.token_urlsafe(24)}
    return str(_serializer(settings).dumps(data))


def _session(settings: GatewaySettings, value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    try:
        data = _serializer(settings).loads(value, max_age=settings.dashboard_session_ttl_s)
    except BadSignature:  # also SignatureExpired
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in "tkc"):
        return None
    return data


async def viewer_of(request: Request, state: GatewayState) -> Viewer | None:
    """The signed-in viewer of ``request``: a valid cookie whose API key is unrevoked; else ``None``."""
    settings = state.settings
    data = _session(settings, request.cookies.get(SESSION_COOKIE))
    if data is None:
        return None
    record = await state.keys.get(data["k"])
    if record is None or record.revoked_at is not None or record.tenant != data["t"]:
        return None
    principal = Principal(tenant=record.tenant, key_id=record.key_id)
    secret = _secret(settings)
    return Viewer(
        principal=principal,
        csrf=data["c"],
        token=page_token(secret, principal, settings.dashboard_token_ttl_s),
        feed_token=feed_token(secret, principal, settings.stream_token_ttl_s),
        stream_idle_ms=round(settings.dashboard_stream_idle_s * 1000),
    )


async def require_viewer(request: Request, state: GatewayState) -> Viewer:
    """The signed-in viewer; else :class:`SignInRequired` (a redirect to the sign-in page)."""
    viewer = await viewer_of(request, state)
    if viewer is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path)
    return viewer


def check_csrf(expected: str | None, sent: str | None) -> None:
    """Refuse (:class:`CsrfRefused`) unless ``sent`` is the expected CSRF token."""
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfRefused


def safe_next(path: str | None) -> str:
    """Where to go after sign-in: a path on this origin, else the jobs list."""
    if path and path.startswith("/") and not path.startswith(("//", "/\\")) and "\n" not in path:
        return path
    return "/jobs"
