"""The methods a path is served with, for a 405's ``Allow``.

Starlette answers a path asked with a method it lacks from the first route whose path matches, so its
``Allow`` names that route's methods only (``PUT /v1/jobs``: ``POST``, though ``GET`` lists the jobs).
RFC 9110 asks for every method the path supports: here those of each path of the app's OpenAPI
document that matches, with the ones Starlette named (a route outside the document).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.routing import compile_path

log = logging.getLogger(__name__)


def allow_header(app: Any, path: str, named: str) -> str:
    """``Allow`` for ``path`` of ``app``: every method a matching path of its document has, and ``named``."""
    methods = {m.strip().upper() for m in named.split(",") if m.strip()}
    for regex, served in _paths(app):
        if regex.match(path):
            methods |= served
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _paths(app: Any) -> list[tuple[re.Pattern[str], set[str]]]:
    """Each path template of ``app``'s OpenAPI document as a pattern, with its methods (kept on the app)."""
    cached: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "allowed_paths", None)
    if cached is None:
        try:
            paths = app.openapi().get("paths", {})
        except Exception:  # a 405 is never made a 500: Starlette's Allow stands alone
            log.exception("no OpenAPI document to tell a 405's Allow from")
            paths = {}
        cached = [(compile_path(template)[0], {m.upper() for m in ops}) for template, ops in paths.items()]
        app.state.allowed_paths = cached
    return cached
