"""The committed OpenAPI document matches the app; regenerate with ``gpurelay openapi``."""

from __future__ import annotations

import json
from pathlib import Path

from services.gateway.openapi import OPENAPI_PATH, openapi_document, openapi_drifted, render


def test_committed_openapi_matches_the_app() -> None:
    assert not openapi_drifted(), "docs/openapi.json is stale: run `gpurelay openapi` and commit it"


def test_drift_is_detected(tmp_path: Path) -> None:
    stale = json.loads(OPENAPI_PATH.read_text())
    stale["paths"].pop(next(iter(stale["paths"])))
    path = tmp_path / "openapi.json"
    path.write_text(render(stale))
    assert openapi_drifted(path)
    path.write_text(render(openapi_document()))
    assert not openapi_drifted(path)


def test_every_error_response_is_problem_json() -> None:
    document = openapi_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)
