"""The gateway's routers, one module per resource; ``ROUTERS`` is what the app mounts."""

from __future__ import annotations

from fastapi import APIRouter

ROUTERS: list[APIRouter] = []
