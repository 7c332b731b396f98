"""A stored job record that no longer validates: how a reader says so, and the failed record to put instead.

Records are written from validated models, so one that fails to validate came from elsewhere: an
older writer (a NaN that pydantic wrote as ``null``), a hand edit, a bug. Nothing may wedge on it:

- :func:`read_record` raises :class:`UnreadableRecordError` for it (the gateway answers 409
  ``invalid_record``; lists leave it out);
- :func:`failed_in_place_of` is what the dispatcher writes instead: the record with each part that
  does not validate reset to its default (a field of the record, or a field of its spec), failed
  with ``invalid_record``, the parts reset named in the error's ``details``. The job never runs
  with a part reset, since it is failed at once. A record whose identity (kind, times) or
  required inputs cannot be read has no such replacement (``None``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from contracts.job_parts import JobError, JobStatus
from contracts.job_record import JobRecord
from contracts.specs.jobs import SPEC_MODELS, JobSpecBase

INVALID_RECORD = "invalid_record"
"""The error code of a job failed because its stored record no longer validated."""
MAX_PROBLEMS = 8
"""Most validation problems an :class:`UnreadableRecordError` names."""
_ROUNDS = 4
_SPECS: dict[str, type[JobSpecBase]] = {kind.value: model for kind, model in SPEC_MODELS.items()}


class UnreadableRecordError(ValueError):
    """KV ``jobs`` holds bytes that are not a valid :class:`~contracts.job_record.JobRecord`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("the stored job record is not valid: " + "; ".join(problems))


def problems_of(exc: ValidationError) -> list[str]:
    """The first :data:`MAX_PROBLEMS` errors of ``exc``, each as ``where: what``."""
    return [f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors()[:MAX_PROBLEMS]]


def read_record(value: bytes | str) -> JobRecord:
    """The job record stored as ``value``; :class:`UnreadableRecordError` when it does not validate."""
    try:
        return JobRecord.model_validate_json(value)
    except ValidationError as exc:
        raise UnreadableRecordError(problems_of(exc)) from None


def _reset(data: dict[str, Any], loc: tuple[int | str, ...]) -> str | None:
    """Drop the part of ``data`` holding an error at ``loc`` (a field of the record, or of its spec:
    its default then applies); the part's name, or ``None`` when it is required."""
    if not loc:
        return None
    name = str(loc[0])
    spec = data.get("spec")
    if name == "spec" and isinstance(spec, dict) and len(loc) > 2 and loc[1] == spec.get("kind"):
        model = _SPECS.get(str(spec.get("kind")))
        field = model.model_fields.get(str(loc[2])) if model is not None else None
        if model is None or (field is not None and field.is_required()):
            return None
        spec.pop(str(loc[2]), None)
        return f"spec.{loc[2]}"
    field = JobRecord.model_fields.get(name)
    if field is not None and field.is_required():
        return None
    data.pop(name, None)
    return name


def failed_in_place_of(value: bytes | str, tenant: str, job_id: str, at: datetime) -> JobRecord | None:
    """The record to write over ``value`` (which does not validate) of ``tenant``'s ``job_id``: its
    parts that do not validate reset, failed with ``invalid_record`` at ``at`` (a record that had
    ended keeps its end); ``None`` when no valid record can be made of it."""
    try:
        data = from_json(value)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    data |= {"id": job_id, "tenant": tenant}
    reset: list[str] = []
    for _ in range(_ROUNDS):
        try:
            record = JobRecord.model_validate(data)
            break
        except ValidationError as exc:
            for problem in exc.errors():
                part = _reset(data, problem["loc"])
                if part is None:
                    return None
                if part not in reset:
                    reset.append(part)
    else:
        return None
    if record.terminal:
        return record.model_copy(update={"updated_at": max(record.updated_at, at)})
    message = "The job's stored record no longer validated (a number that is not finite, say); it cannot run."
    error = JobError(code=INVALID_RECORD, message=message, details={"reset": reset})
    return record.transition(JobStatus.FAILED, at, error=error)
