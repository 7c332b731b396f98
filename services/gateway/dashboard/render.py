"""Rendering the dashboard's pages: Jinja2 templates, the headers every page carries, error pages."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from contracts.record_repair import UnreadableRecordError
from services.common.http.problem import ProblemError
from services.common.queue_place import queue_place_text
from services.gateway.dashboard.auth import Viewer

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'",
}


def _json_attr(value: Any) -> Markup:
    """``value`` as JSON safe inside an HTML attribute or a ``<script type=application/json>``."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))  # noqa: S704


TEMPLATES.env.filters["tojson_safe"] = _json_attr
TEMPLATES.env.filters["queue_place"] = lambda place: queue_place_text(place.model_dump())


def page(request: Request, name: str, viewer: Viewer | None, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Template ``name`` with the viewer and ``context``; the dashboard's headers."""
    response = TEMPLATES.TemplateResponse(
        request, name, {"viewer": viewer, **context}, status_code=status_code, headers=PAGE_HEADERS
    )
    return response


def error_page(request: Request, viewer: Viewer | None, status_code: int, title: str, detail: str) -> HTMLResponse:
    """An HTML error page (the API's own errors stay problem+json)."""
    return page(request, "error.html", viewer, status_code=status_code, title=title, detail=detail)


async def or_error_page(request: Request, viewer: Viewer | None, what: str, loading: Awaitable[T]) -> T | HTMLResponse:
    """What ``loading`` reads of a job or session (``what``, as the page names it), or the error page
    when there is none here (404) or its stored record is not valid (409)."""
    try:
        return await loading
    except UnreadableRecordError:
        return error_page(request, viewer, 409, "Invalid record", f"The stored record of {what} is not valid.")
    except ProblemError as exc:
        if exc.status != 404:
            raise
        return error_page(request, viewer, 404, "Not found", f"There is no {what} here.")
