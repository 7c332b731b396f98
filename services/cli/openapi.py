"""The public HTTP API's OpenAPI document, committed as ``docs/openapi.json`` (a test checks drift).

One document for the one origin clients see: the gateway's routes plus the notifier's (SSE and
webhook deliveries), which the reverse proxy (or ``gpurelay dev``) serves beside them. It is
composed here, where both apps are composed, so neither service imports the other.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from contracts.documents.generated import Document, GeneratedFile
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.notifier.routes import router as notifier_router

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def openapi_document() -> Document:
    """The OpenAPI document of the gateway plus the notifier's routes (no server is started)."""
    with tempfile.TemporaryDirectory(prefix="gpurelay-openapi-") as tmp:
        app = create_app(GatewaySettings(profile="test", data_dir=Path(tmp)))
        app.include_router(notifier_router)
        document: Document = app.openapi()
    return document


OPENAPI = GeneratedFile(OPENAPI_PATH, openapi_document)
"""``docs/openapi.json``: ``gpurelay openapi`` writes it, a test checks its drift."""
