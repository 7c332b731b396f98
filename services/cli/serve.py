"""``gpurelay gateway|dispatcher|notifier``: one service in the foreground (what compose runs).

Each reads its settings from ``GPURELAY_*`` (or ``<data dir>/dev.env``) and stops cleanly on
SIGINT or SIGTERM.
"""

from __future__ import annotations

from typing import Any

import typer
import uvicorn

from services.common.config import GatewaySettings, NotifierSettings, load_settings
from services.common.logging import setup_logging

serve_app = typer.Typer(add_completion=False)


def _run_asgi(app: Any, host: str, port: int) -> None:
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")


@serve_app.command()
def gateway() -> None:
    """Serve the public REST API."""
    from services.gateway.app import create_app

    settings = load_settings(GatewaySettings)
    setup_logging(settings, service="gateway")
    _run_asgi(create_app(settings), settings.host, settings.port)


@serve_app.command()
def notifier() -> None:
    """Serve SSE and deliver webhooks."""
    from services.notifier.app import create_app

    settings = load_settings(NotifierSettings)
    setup_logging(settings, service="notifier")
    _run_asgi(create_app(settings), settings.host, settings.port)


@serve_app.command()
def dispatcher() -> None:
    """Route jobs to workers; serves /healthz on GPURELAY_PORT (default 8002)."""
    from services.dispatcher.__main__ import main

    main()
