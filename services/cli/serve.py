"""``gpurelay gateway|dispatcher|notifier``: one service in the foreground (what compose runs).

Each reads its settings from ``GPURELAY_*`` (or ``<data dir>/dev.env``), exports traces when an
OTLP endpoint is configured, and stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import os
import sys

from services.cli.output import CommandGroup
from services.common.config import load_settings
from services.common.http_server import serve_forever
from services.common.observability.logging import setup_logging
from services.common.observability.tracing import setup_tracing
from services.gateway.settings import GatewaySettings
from services.notifier.settings import NotifierSettings

serve_app = CommandGroup(add_completion=False)


@serve_app.command()
def gateway() -> None:
    """Serve the public REST API."""
    from services.gateway.app import create_app

    settings = load_settings(GatewaySettings)
    setup_logging(settings, service="gateway")
    setup_tracing(settings, "gateway")
    serve_forever(create_app(settings), settings.host, settings.port, settings.ws_max_message_bytes)


@serve_app.command()
def notifier() -> None:
    """Serve SSE and deliver webhooks."""
    from services.notifier.app import create_app

    settings = load_settings(NotifierSettings)
    setup_logging(settings, service="notifier")
    setup_tracing(settings, "notifier")
    serve_forever(create_app(settings), settings.host, settings.port, settings.ws_max_message_bytes)


@serve_app.command()
def dispatcher() -> None:
    """Route jobs to workers; serves /healthz on GPURELAY_PORT (default 8002)."""
    # Become ``python -m services.dispatcher`` (same pid, same environment), so the process holds the
    # dispatcher's imports, not this console script's whole CLI. (Its pool processes skip the main
    # module either way: services.common.processes.spawning_without_main.)
    os.execv(sys.executable, [sys.executable, "-m", "services.dispatcher"])  # noqa: S606 - no shell: this very interpreter
