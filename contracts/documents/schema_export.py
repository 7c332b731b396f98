"""JSON Schemas of the v1 contracts, committed under ``contracts/schema/``.

``python -m contracts.documents.schema_export`` rewrites them; ``--check`` lists drift and exits 1 when the
committed files no longer match the models (the test suite runs the same check).
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from contracts.dead_letters import DeadLetter
from contracts.documents.generated import GeneratedFile
from contracts.envelope import EventEnvelope
from contracts.events.registry import PAYLOADS
from contracts.events.robots import JointBatch
from contracts.job_record import JobRecord
from contracts.recordings.comparison import SessionComparison
from contracts.recordings.manifest import RecordingManifest
from contracts.specs.jobs import SPEC_MODELS, JobSpecAdapter, WebhookTarget
from contracts.streams import BucketDecl, Declarations, StreamDecl

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schema"
"""Where the committed schemas live."""

Schemable = type[BaseModel] | TypeAdapter[Any]


def schema_sources() -> dict[str, Schemable]:
    """File name → the model (or type adapter) whose JSON Schema it holds."""
    sources: dict[str, Schemable] = {
        "envelope.json": EventEnvelope,
        "job_spec.json": JobSpecAdapter,
        "job_record.json": JobRecord,
        "webhook_target.json": WebhookTarget,
        "joint_batch.json": JointBatch,
        "stream_decl.json": StreamDecl,
        "bucket_decl.json": BucketDecl,
        "declarations.json": Declarations,
        "dead_letter.json": DeadLetter,
        "recording_manifest.json": RecordingManifest,
        "session_comparison.json": SessionComparison,
    }
    for kind, spec in SPEC_MODELS.items():
        sources[f"spec.{kind.value}.json"] = spec
    for type_, payload in PAYLOADS.items():
        sources[f"payload.{type_.value}.json"] = payload
    return sources


def _schema_of(source: Schemable) -> dict[str, Any]:
    if isinstance(source, TypeAdapter):
        return source.json_schema()
    return source.model_json_schema()


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema (validation mode) of every contract."""
    schemas: dict[str, dict[str, Any]] = {}
    for name, source in schema_sources().items():
        schema = _schema_of(source)
        schema.setdefault("title", name.removesuffix(".json"))
        schemas[name] = schema
    return schemas


def schema_files(out_dir: Path = SCHEMA_DIR) -> list[GeneratedFile]:
    """One generated file per schema, under ``out_dir``, sorted by name."""
    return [GeneratedFile(out_dir / name, partial(dict, schema)) for name, schema in sorted(all_schemas().items())]


def _stale(out_dir: Path, files: list[GeneratedFile]) -> list[Path]:
    """The ``.json`` files in ``out_dir`` that no schema generates."""
    names = {file.path.name for file in files}
    return sorted(path for path in out_dir.glob("*.json") if path.name not in names) if out_dir.is_dir() else []


def write_schemas(out_dir: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema to ``out_dir`` (deleting stale ``.json`` files); returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = schema_files(out_dir)
    for stale in _stale(out_dir, files):
        stale.unlink()
    return [file.write() for file in files]


def check_schemas(out_dir: Path = SCHEMA_DIR) -> list[str]:
    """Names of the schema files in ``out_dir`` that differ, are missing or are stale ([] = in sync)."""
    files = schema_files(out_dir)
    drift = [file.path.name for file in files if file.drifted()] + [path.name for path in _stale(out_dir, files)]
    return sorted(drift)


def main(argv: list[str] | None = None) -> int:
    """``python -m contracts.documents.schema_export [--check] [DIR]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    rest = [a for a in args if a != "--check"]
    out_dir = Path(rest[0]) if rest else SCHEMA_DIR
    if check:
        drift = check_schemas(out_dir)
        for name in drift:
            print(f"schema drift: {name}")
        return 1 if drift else 0
    for path in write_schemas(out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
