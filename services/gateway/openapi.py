"""The public HTTP API's OpenAPI document, committed as ``docs/openapi.json`` (a test checks drift).

One document for the one origin clients see: the gateway's routes plus the notifier's (SSE and
webhook deliveries), which the reverse proxy (or ``gpurelay dev``) serves beside them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from services.common.config import GatewaySettings

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the gateway plus the notifier's routes (no server is started)."""
    from services.gateway.app import create_app
    from services.notifier.routes import router as notifier_router

    with tempfile.TemporaryDirectory(prefix="gpurelay-openapi-") as tmp:
        app = create_app(GatewaySettings(profile="test", data_dir=Path(tmp)))
        app.include_router(notifier_router)
        document: dict[str, Any] = app.openapi()
    return document


def render(document: dict[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_openapi(path: Path = OPENAPI_PATH) -> Path:
    """Write the document to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(openapi_document()))
    return path


def openapi_drifted(path: Path = OPENAPI_PATH) -> bool:
    """Whether the committed document differs from the app's."""
    return not path.exists() or path.read_text() != render(openapi_document())
