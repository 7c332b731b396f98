"""Two apps on one origin, as a reverse proxy routes them in production (``gpurelay dev``).

The second app's routes (the paths and methods of its OpenAPI document) are added to the first's
router, each forwarding to the second app, instead of mounting the second at ``/``: a mount there
takes every request the first app has no route for, so a path of the first asked with a method it
lacks (``PUT /v1/jobs``) went to the second and came back a 404, where HTTP asks for a 405 with
``Allow``. A path neither has is still the first's 404, and one both have is the first's.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.routing import Route


def serve_routes_of(app: FastAPI, other: FastAPI) -> None:
    """Answer ``other``'s routes from ``app``'s origin, after ``app``'s own (``other`` serves them)."""
    for path, operations in other.openapi()["paths"].items():
        methods = sorted(method.upper() for method in operations)
        app.router.routes.append(Route(path, other, methods=methods, include_in_schema=False))
