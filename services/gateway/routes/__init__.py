"""The gateway's routers, one module per resource; ``ROUTERS`` is what the app mounts."""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway.routes import (
    compat_so100,
    dead_letters,
    ingest,
    jobs,
    jobs_batch,
    robots,
    sessions,
    uploads,
    webhooks,
)

ROUTERS: list[APIRouter] = []
ROUTERS += [uploads.router, jobs_batch.router, jobs.router]
ROUTERS += [webhooks.router, dead_letters.router, ingest.router]
ROUTERS.append(robots.router)
ROUTERS += [sessions.router, sessions.internal_router, compat_so100.router]
