"""The committed JSON Schemas match the models, and the drift check can fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import Field

from contracts.documents import schema_export
from contracts.documents.schema_export import SCHEMA_DIR, all_schemas, check_schemas, main, write_schemas
from contracts.events.registry import EventType
from contracts.specs.jobs import JobKind, LapCompareParams, LapCompareSpec


def test_committed_schemas_are_current() -> None:
    assert check_schemas() == [], "run: python -m contracts.documents.schema_export"
    assert check_schemas(SCHEMA_DIR) == []


def test_schemas_cover_every_contract() -> None:
    names = set(all_schemas())
    assert {f"payload.{t.value}.json" for t in EventType} <= names
    assert {f"spec.{k.value}.json" for k in JobKind} <= names
    expected = {"envelope.json", "job_spec.json", "job_record.json", "stream_decl.json", "bucket_decl.json"}
    assert expected <= names


def test_write_is_deterministic(tmp_path: Path) -> None:
    written = write_schemas(tmp_path)
    first = {p.name: p.read_bytes() for p in written}
    write_schemas(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.json")} == first
    for raw in first.values():
        assert raw.endswith(b"}\n")
        text = raw.decode()
        assert json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n" == text
    assert check_schemas(tmp_path) == []


def test_drift_is_reported(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    (tmp_path / "payload.job.progress.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "envelope.json").unlink()
    (tmp_path / "old.json").write_text("{}\n", encoding="utf-8")
    assert check_schemas(tmp_path) == ["envelope.json", "old.json", "payload.job.progress.json"]
    assert main(["--check", str(tmp_path)]) == 1
    write_schemas(tmp_path)
    assert not (tmp_path / "old.json").exists()
    assert main(["--check", str(tmp_path)]) == 0


def test_a_changed_model_is_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_schemas(tmp_path)

    class WiderParams(LapCompareParams):
        """Lap compare params with one more field."""

        smoothing: float = Field(default=0.5, ge=0, le=1)

    class WiderSpec(LapCompareSpec):
        """Lap compare spec using the wider params."""

        params: WiderParams = Field(default_factory=WiderParams)

    real = schema_export.schema_sources

    def changed() -> dict[str, schema_export.Schemable]:
        sources = real()
        sources["spec.lap_compare.json"] = WiderSpec
        return sources

    monkeypatch.setattr(schema_export, "schema_sources", changed)
    assert check_schemas(tmp_path) == ["spec.lap_compare.json"]
