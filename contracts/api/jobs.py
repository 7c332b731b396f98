"""Job API bodies (``/v1/jobs``).

:data:`JobCreate` is the :data:`~contracts.specs.jobs.JobSpec` union itself, so the OpenAPI shows one
schema per kind, with one change to its errors: pydantic puts the union tag into each error's
location (``("pose", "params", "batch_size")``) and reports a bad ``kind`` at the root. Here the tag
is dropped and ``kind`` errors are reported at ``("kind",)``, so every error names the body field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from contracts.base import Contract, JsonObject
from contracts.ids import ID_PATTERN, JobId, SubjectId
from contracts.job_parts import Artifact, JobCost, JobError, JobProgress, JobStatus, JobTimings, QueuePlace, StageState
from contracts.specs.jobs import (
    SPEC_MODELS,
    JobKind,
    JobSpec,
    JobSpecAdapter,
    LapCompareSpec,
    NerfSpec,
    PoseSpec,
    SessionExportSpec,
    SplatSpec,
    VlmSpec,
)

_BODY = ConfigDict(extra="forbid")
_TAGS = frozenset(kind.value for kind in SPEC_MODELS)
_KIND_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})


def _relocated(error: ErrorDetails, kind: object) -> InitErrorDetails:
    loc = tuple(error["loc"])
    msg = error["msg"]
    if error["type"] in _KIND_ERRORS:
        loc = ("kind",)
        expected = ", ".join(sorted(_TAGS))
        msg = f"kind must be one of: {expected}" if error["type"] == "union_tag_invalid" else "Field required"
    elif loc and loc[0] == kind and kind in _TAGS:
        loc = loc[1:]
    return {"type": PydanticCustomError(error["type"], msg), "loc": loc, "input": error["input"]}


def field_locations(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A wrap validator of spec unions: errors located at body fields (the union tag dropped)."""
    try:
        return handler(value)
    except ValidationError as exc:
        kind = value.get("kind") if isinstance(value, dict) else None
        errors = [_relocated(error, kind) for error in exc.errors()]
        raise ValidationError.from_exception_data(exc.title, errors) from None


JobCreate = Annotated[
    LapCompareSpec | PoseSpec | NerfSpec | SplatSpec | VlmSpec | SessionExportSpec,
    Discriminator("kind"),
    WrapValidator(field_locations),
]
"""``{kind, inputs, params, webhook?}``: a job spec, its errors located at body fields."""


class JobUrls(Contract):
    """Where to follow a job: the record, its live events (SSE, with a stream token), cancel."""

    model_config = _BODY

    self: str = Field(description="GET the job record.")
    events: str = Field(description="SSE stream of the job's events; carries a short-lived token.")
    cancel: str = Field(description="POST to request cancellation.")


class JobOut(Contract):
    """A job as clients see it; artifacts carry fresh pre-signed download URLs."""

    model_config = _BODY

    id: JobId
    kind: JobKind
    status: JobStatus
    subject: SubjectId | None = Field(default=None, description="The end user whose token created it.")
    spec: JobSpec
    attempt: int
    max_attempts: int
    progress: JobProgress
    stage: str | None = None
    stages: tuple[StageState, ...] = ()
    result: JsonObject | None = None
    artifacts: tuple[Artifact, ...] = ()
    error: JobError | None = None
    timings: JobTimings
    cost: JobCost
    cancel_requested: bool = False
    queue: QueuePlace | None = Field(default=None, description="While queued: its position and ETA.")
    created_at: datetime
    updated_at: datetime
    urls: JobUrls


class JobList(Contract):
    """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    model_config = _BODY

    items: list[JobOut]
    next_cursor: str | None = Field(default=None, description="None on the last page.")


class IdempotencyClaim(Contract):
    """The KV ``idempotency`` value: the job an ``Idempotency-Key`` created and its body's digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: JobId
    body_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @staticmethod
    def kv_key(tenant: str, key: str) -> str:
        """The KV key of a tenant's ``Idempotency-Key``: ``sha256(tenant + "\\n" + key)`` in hex."""
        return hashlib.sha256(f"{tenant}\n{key}".encode()).hexdigest()

    @staticmethod
    def digest(spec: JobSpec) -> str:
        """SHA-256 of the validated spec as canonical JSON (sorted keys, no white space)."""
        data = JobSpecAdapter.dump_python(spec, mode="json")
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def encode_cursor(job_id: str) -> str:
    """The opaque list cursor after ``job_id`` (base64url, no padding)."""
    return base64.urlsafe_b64encode(job_id.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> str | None:
    """The job id a cursor holds, or ``None`` when it is not a cursor."""
    try:
        job_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return job_id if job_id.startswith("job_") and ID_PATTERN.fullmatch(job_id) else None
