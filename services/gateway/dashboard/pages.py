"""Sign-in, sign-out and the page token refresh.

Sign-in takes a pasted API key (a POST with the double-submit CSRF token of the sign-in cookie),
checks it with the key store (a dashboard token is not an API key and is refused) and sets the
session cookie (:mod:`services.gateway.dashboard.auth`). Sign-out needs the session's CSRF token.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from services.gateway.dashboard.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Viewer,
    check_csrf,
    cookie_flags,
    require_viewer,
    safe_next,
    session_cookie,
    viewer_of,
)
from services.gateway.dashboard.render import PAGE_HEADERS, page
from services.gateway.deps import StateDep
from services.gateway.state import GatewayState

router = APIRouter()


async def _viewer(request: Request, state: StateDep) -> Viewer:
    return await require_viewer(request, state)


ViewerDep = Annotated[Viewer, Depends(_viewer)]


@router.get("/")
async def home() -> RedirectResponse:
    """The jobs list is the dashboard's home."""
    return RedirectResponse("/jobs", status_code=303)


def _login_page(
    request: Request, state: GatewayState, next_path: str, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = page(request, "login.html", None, status_code=status_code, csrf=csrf, next=next_path, error=error)
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, max_age=3600, **cookie_flags(state.settings))
    return response


@router.get("/login")
async def login_form(request: Request, state: StateDep, next: str = "/jobs") -> Response:
    """The sign-in form (straight on to ``next`` when already signed in)."""
    if await viewer_of(request, state) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, state, safe_next(next))


@router.post("/login")
async def login(
    request: Request,
    state: StateDep,
    api_key: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/jobs",
) -> Response:
    """Check the pasted key; set the session cookie and go on, or show the form again (401)."""
    check_csrf(request.cookies.get(LOGIN_CSRF_COOKIE), csrf)
    principal = await state.keys.verify(api_key.strip())
    if principal is None:
        message = "That API key is not valid (or it was revoked)."
        return _login_page(request, state, safe_next(next), error=message, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303, headers=PAGE_HEADERS)
    response.set_cookie(
        SESSION_COOKIE,
        session_cookie(state.settings, principal),
        max_age=state.settings.dashboard_session_ttl_s,
        **cookie_flags(state.settings),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(viewer: ViewerDep, state: StateDep, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Forget the session cookie (with this session's CSRF token only)."""
    check_csrf(viewer.csrf, csrf)
    response = RedirectResponse("/login", status_code=303, headers=PAGE_HEADERS)
    flags = cookie_flags(state.settings)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=flags["secure"], httponly=True, samesite="strict")
    return response


@router.get("/token")
async def fresh_token(viewer: ViewerDep, state: StateDep) -> JSONResponse:
    """A fresh API token for a page open longer than the token lives (same-origin scripts only), and a
    fresh feed token for its live list (``feed_token``, as the jobs page's)."""
    body = {"token": viewer.token, "expires_in": state.settings.dashboard_token_ttl_s, "feed_token": viewer.feed_token}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
