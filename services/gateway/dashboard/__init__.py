"""The web dashboard the gateway serves at ``/``: server-rendered pages (Jinja2, htmx) over the API.

Pages read through the gateway's own functions (no HTTP to itself); what a page changes or watches
live goes from the browser to the API on the same origin with a short-lived bearer token (see
docs/dashboard.md). :func:`install_dashboard` mounts the pages, the static files and the handlers
that turn "sign in first" into a redirect and a refused CSRF token into a 403 page.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from services.gateway.dashboard.auth import CsrfRefused, SignInRequired
from services.gateway.dashboard.pages import router as pages_router
from services.gateway.dashboard.pages_jobs import router as jobs_router
from services.gateway.dashboard.pages_live import router as live_router
from services.gateway.dashboard.pages_sessions import router as sessions_router
from services.gateway.dashboard.render import HERE, error_page

STATIC_PATH = "/static"


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard's pages and static files from ``app`` (outside the OpenAPI document)."""
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="dashboard-static")
    for router in (pages_router, jobs_router, live_router, sessions_router):
        app.include_router(router, include_in_schema=False)

    async def sign_in_first(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return RedirectResponse(f"/login?next={_quote(exc.next_path)}", status_code=303)

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        detail = "The form was sent without this session's CSRF token. Reload the page and try again."
        return error_page(request, None, 403, "Refused", detail)

    app.add_exception_handler(SignInRequired, sign_in_first)
    app.add_exception_handler(CsrfRefused, csrf_refused)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")
