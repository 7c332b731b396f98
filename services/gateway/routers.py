"""The gateway's routers, one package per resource; ``ROUTERS`` is what the app mounts."""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway.compat import so100 as compat_so100
from services.gateway.cors import routes as cors
from services.gateway.ingest import routes as ingest
from services.gateway.jobs import batch as jobs_batch
from services.gateway.jobs import cancel as jobs_cancel
from services.gateway.jobs import routes as jobs
from services.gateway.kinds import routes as kinds
from services.gateway.robots import history as robots_history
from services.gateway.robots import routes as robots
from services.gateway.sessions import listing as sessions_list
from services.gateway.sessions import recording_routes as session_recordings
from services.gateway.sessions import routes as sessions
from services.gateway.sessions import source_routes as session_sources
from services.gateway.tokens import routes as tokens
from services.gateway.uploads import routes as uploads
from services.gateway.usage import routes as usage
from services.gateway.webhooks import dead_letter_routes as dead_letters
from services.gateway.webhooks import routes as webhooks

ROUTERS: list[APIRouter] = []
ROUTERS += [uploads.router, jobs_batch.router, jobs_cancel.router, jobs.router]
ROUTERS += [webhooks.router, dead_letters.router, ingest.router, cors.router]
ROUTERS += [robots_history.router, robots.router, tokens.router, kinds.router, usage.router]
ROUTERS += [sessions_list.router, sessions.router, session_recordings.router, sessions.internal_router]
ROUTERS += [session_sources.router, compat_so100.router]
