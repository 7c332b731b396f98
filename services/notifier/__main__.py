"""``python -m services.notifier``: serve the notifier with settings from the environment."""

from __future__ import annotations

import uvicorn

from services.common.config import NotifierSettings, load_settings
from services.common.logging import setup_logging
from services.notifier.app import create_app


def main() -> None:
    """Run the notifier until interrupted (SIGINT/SIGTERM stop it gracefully)."""
    settings = load_settings(NotifierSettings)
    setup_logging(settings, service="notifier")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
