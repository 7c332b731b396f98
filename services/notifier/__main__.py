"""``python -m services.notifier``: serve the notifier with settings from the environment."""

from __future__ import annotations

from services.common.config import load_settings
from services.common.http_server import serve_forever
from services.common.observability.logging import setup_logging
from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings


def main() -> None:
    """Run the notifier until interrupted (SIGINT/SIGTERM stop it gracefully)."""
    settings = load_settings(NotifierSettings)
    setup_logging(settings, service="notifier")
    serve_forever(create_app(settings), settings.host, settings.port, settings.ws_max_message_bytes)


if __name__ == "__main__":
    main()
