"""Job specs (v1): what a client asks for, one model per kind, a discriminated union on ``kind``.

``POST /v1/jobs`` takes ``{kind, inputs, params, webhook?}``: ``inputs`` as
:mod:`contracts.specs.job_inputs` has them per kind, ``params`` as :mod:`contracts.specs.job_params` and
:mod:`contracts.specs.session_params`. Every model forbids unknown fields.
"""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    field_validator,
    model_validator,
)

from contracts.base import Contract
from contracts.ids import ResourceId
from contracts.specs.job_inputs import (
    JobInputs,
    LapCompareInputs,
    NerfInputs,
    PoseInputs,
    SessionExportInputs,
    SplatInputs,
    VlmInputs,
)
from contracts.specs.job_params import JobParams, LapCompareParams, NerfParams, PoseParams, SessionExportParams
from contracts.specs.session_params import SplatParams, VlmParams
from contracts.specs.session_source import DatasetSource, SessionSource


class JobKind(StrEnum):
    """The workloads gpurelay runs."""

    LAP_COMPARE = "lap_compare"
    POSE = "pose"
    NERF = "nerf"
    SPLAT = "splat"
    VLM = "vlm"
    SESSION_EXPORT = "session_export"


SESSION_KINDS: frozenset[JobKind] = frozenset({JobKind.SPLAT, JobKind.VLM})
"""Kinds that run as a live, stateful session (frames arrive over NATS while it runs)."""
BATCH_KINDS: frozenset[JobKind] = frozenset(set(JobKind) - SESSION_KINDS)
"""Kinds that run once over uploaded inputs and finish on their own."""
PIPELINE_KINDS: frozenset[JobKind] = frozenset({JobKind.NERF})
"""Batch kinds that report ``job.stage`` events (several stages in one job)."""

_STRICT = ConfigDict(extra="forbid", frozen=True)

_EVENT_GLOB = re.compile(r"^[a-z_*]+(\.[a-z_*]+)*$")


# -- specs ----------------------------------------------------------------------------------------
MAX_DELAY_S = 7 * 24 * 3600.0
"""The longest ``delay_s`` a spec may ask for (a week)."""


class WebhookTarget(Contract):
    """A per-job webhook: where to POST, and which event types (globs such as ``job.*``)."""

    model_config = _STRICT

    url: HttpUrl
    events: tuple[str, ...] = Field(default=("job.*",), min_length=1, max_length=32)

    @field_validator("events")
    @classmethod
    def _globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for glob in value:
            if len(glob) > 64 or not _EVENT_GLOB.fullmatch(glob):
                raise ValueError(f"event filter {glob!r} must be a type or glob such as 'job.*'")
        return value

    def matches(self, event_type: str) -> bool:
        """Whether an event of ``event_type`` goes to this webhook."""
        return any(fnmatch.fnmatchcase(event_type, glob) for glob in self.events)


class JobSpecBase(Contract):
    """Fields every spec has; the concrete specs narrow ``kind``, ``inputs`` and ``params``."""

    model_config = _STRICT

    kind: str
    inputs: JobInputs
    params: JobParams
    webhook: WebhookTarget | None = None
    priority: int = Field(
        default=5, ge=0, le=9, description="Order within the tenant's queue of the kind: 9 first, 0 last (with ageing)."
    )
    run_at: AwareDatetime | None = Field(default=None, description="Do not start before this time.")
    delay_s: float | None = Field(
        default=None, ge=0, le=MAX_DELAY_S, description="Do not start until this long after the job was created."
    )
    concurrency_key: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="A tenant's jobs with one key run at most concurrency_key_limit at once (e.g. per end user).",
    )  # fmt: skip

    @model_validator(mode="after")
    def _one_delay(self) -> Self:
        if self.run_at is not None and self.delay_s is not None:
            raise ValueError("give run_at or delay_s, not both")
        return self

    def due_at(self, created_at: datetime) -> datetime | None:
        """When a job created at ``created_at`` may start (``None``: at once)."""
        if self.run_at is not None:
            return self.run_at
        return created_at + timedelta(seconds=self.delay_s) if self.delay_s else None

    @property
    def job_kind(self) -> JobKind:
        """``kind`` as a :class:`JobKind`."""
        return JobKind(self.kind)

    @property
    def is_session(self) -> bool:
        """Whether this spec starts a live session."""
        return self.job_kind in SESSION_KINDS

    def upload_ids(self) -> list[str]:
        """The upload ids this spec references, in input order (the dispatcher waits for them)."""
        return [ref.upload_id for ref in self.inputs.refs().values() if ref.upload_id is not None]


class LapCompareSpec(JobSpecBase):
    """A lap comparison job."""

    kind: Literal["lap_compare"] = "lap_compare"
    inputs: LapCompareInputs
    params: LapCompareParams = Field(default_factory=LapCompareParams)


class PoseSpec(JobSpecBase):
    """A pose estimation job."""

    kind: Literal["pose"] = "pose"
    inputs: PoseInputs
    params: PoseParams = Field(default_factory=PoseParams)


class NerfSpec(JobSpecBase):
    """A NeRF pipeline job."""

    kind: Literal["nerf"] = "nerf"
    inputs: NerfInputs
    params: NerfParams = Field(default_factory=NerfParams)


class SessionExportSpec(JobSpecBase):
    """A session's recording exported as a LeRobot dataset, an MCAP or a Rerun file."""

    kind: Literal["session_export"] = "session_export"
    inputs: SessionExportInputs = Field(default_factory=SessionExportInputs)
    params: SessionExportParams


class SessionSpecBase(JobSpecBase):
    """A live session: ``robot_id`` is the robot whose joint angles it sees (the gateway binds a
    session that names none to a robot of its own, with the session's id). With ``source`` its frames
    and joints come from a dataset or a recording (:mod:`contracts.specs.session_source`), on a robot
    of its own."""

    robot_id: ResourceId | None = None
    source: SessionSource | None = Field(
        default=None, description="Feed the session from a LeRobot dataset or an ended session's recording."
    )

    @model_validator(mode="after")
    def _own_robot_when_sourced(self) -> Self:
        if self.source is not None and self.robot_id is not None:
            raise ValueError("a session fed from a source has a robot of its own: leave robot_id out")
        return self

    def upload_ids(self) -> list[str]:
        """The inputs' uploads and the source's (the dispatcher waits for each)."""
        ids = super().upload_ids()
        if isinstance(self.source, DatasetSource):
            ids.append(self.source.upload_id)
        return ids


class SplatSpec(SessionSpecBase):
    """A live Gaussian-splat session."""

    kind: Literal["splat"] = "splat"
    inputs: SplatInputs = Field(default_factory=SplatInputs)
    params: SplatParams = Field(default_factory=SplatParams)


class VlmSpec(SessionSpecBase):
    """A live VLM session."""

    kind: Literal["vlm"] = "vlm"
    inputs: VlmInputs = Field(default_factory=VlmInputs)
    params: VlmParams = Field(default_factory=VlmParams)


JobSpec = Annotated[
    LapCompareSpec | PoseSpec | NerfSpec | SplatSpec | VlmSpec | SessionExportSpec,
    Field(discriminator="kind"),
]
"""Any job spec; ``kind`` picks the model."""
JobSpecAdapter: TypeAdapter[JobSpec] = TypeAdapter(JobSpec)
"""Validates and serialises :data:`JobSpec` (``JobSpecAdapter.validate_python(body)``)."""

SPEC_MODELS: dict[JobKind, type[JobSpecBase]] = {
    JobKind.LAP_COMPARE: LapCompareSpec,
    JobKind.POSE: PoseSpec,
    JobKind.NERF: NerfSpec,
    JobKind.SPLAT: SplatSpec,
    JobKind.VLM: VlmSpec,
    JobKind.SESSION_EXPORT: SessionExportSpec,
}
"""The spec model of each kind."""


def parse_job_spec(data: Any) -> JobSpec:
    """Validate a spec from Python data (a dict from JSON); raises ``pydantic.ValidationError``."""
    return JobSpecAdapter.validate_python(data)
