"""The committed AsyncAPI document matches the contracts; regenerate with ``gpurelay schema``."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.documents.asyncapi import ASYNCAPI, ASYNCAPI_PATH, asyncapi_document
from contracts.documents.generated import render_json
from contracts.events.registry import EventType


def test_committed_asyncapi_matches_the_contracts() -> None:
    assert not ASYNCAPI.drifted(), "docs/asyncapi.json is stale: run `gpurelay schema` and commit it"


def test_drift_is_detected(tmp_path: Path) -> None:
    stale = json.loads(ASYNCAPI_PATH.read_text())
    stale["components"]["messages"].pop("job_progress")
    path = tmp_path / "asyncapi.json"
    path.write_text(render_json(stale))
    assert ASYNCAPI.at(path).drifted()


def test_every_published_event_type_has_a_message_on_a_channel() -> None:
    document = asyncapi_document()
    on_channels = {ref for ch in document["channels"].values() for ref in ch["messages"]}
    session_types = {t for t in EventType if t.startswith("session.")}
    expected = {t.value.replace(".", "_") for t in EventType if t not in session_types}
    assert expected <= on_channels
    for name in on_channels:
        assert name in document["components"]["messages"]
