"""The webhooks, robots and sessions pages.

Their lists are read in-process (the API's own functions); creating, deleting, sending frames and
watching live run in the browser against the API with the page's short-lived token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from contracts.ids import tenant_key_filter
from services.common.kv import kv_entries
from services.gateway.dashboard.pages import ViewerDep
from services.gateway.dashboard.render import page
from services.gateway.deps import StateDep
from services.gateway.routes.webhooks import list_webhooks

router = APIRouter()
MAX_ROBOTS = 50


@router.get("/webhooks")
async def webhooks_page(request: Request, state: StateDep, viewer: ViewerDep) -> HTMLResponse:
    """The tenant's endpoints; create (secret shown once), delete, deliveries and dead letters."""
    endpoints = (await list_webhooks(viewer.principal, state)).data
    return page(request, "webhooks.html", viewer, endpoints=endpoints)


@router.get("/webhooks/list")
async def webhooks_list(request: Request, state: StateDep, viewer: ViewerDep) -> HTMLResponse:
    """The endpoints' table alone (refreshed after a change)."""
    endpoints = (await list_webhooks(viewer.principal, state)).data
    return page(request, "webhook_rows.html", viewer, endpoints=endpoints)


@router.get("/robots")
async def robots_page(request: Request, state: StateDep, viewer: ViewerDep) -> HTMLResponse:
    """The tenant's robots (those with joint angles); the chosen one's latest joints, live."""
    entries = await kv_entries(state.kv.robots, tenant_key_filter(viewer.tenant), meta_only=True)
    robots = sorted({e.key.partition(".")[2] for e in entries})[:MAX_ROBOTS]
    return page(request, "robots.html", viewer, robots=robots)


@router.get("/sessions")
async def sessions_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    """Start a splat or vlm session, feed it frames, watch its results and its 3D view."""
    return page(request, "sessions.html", viewer)
