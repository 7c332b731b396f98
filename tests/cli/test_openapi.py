"""The committed OpenAPI document matches the app; regenerate with ``gpurelay openapi``."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.documents.generated import render_json
from services.cli.openapi import OPENAPI, OPENAPI_PATH, openapi_document


def test_committed_openapi_matches_the_app() -> None:
    assert not OPENAPI.drifted(), "docs/openapi.json is stale: run `gpurelay openapi` and commit it"


def test_drift_is_detected(tmp_path: Path) -> None:
    stale = json.loads(OPENAPI_PATH.read_text())
    stale["paths"].pop(next(iter(stale["paths"])))
    path = tmp_path / "openapi.json"
    path.write_text(render_json(stale))
    assert OPENAPI.at(path).drifted()
    path.write_text(render_json(openapi_document()))
    assert not OPENAPI.at(path).drifted()


def test_every_error_response_is_problem_json() -> None:
    document = openapi_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)
