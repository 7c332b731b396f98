"""Job specs (v1): what a client asks for, one model per kind, a discriminated union on ``kind``.

``POST /v1/jobs`` takes ``{kind, inputs, params, webhook?}``. ``inputs`` maps an input name to
``{"upload_id": ...}`` or ``{"url": "https://..."}``; the names are fixed per kind (lap_compare:
``video`` and optional ``reference``; pose: ``video``; nerf: ``images``; the live session kinds
splat and vlm take no inputs, their frames come live). Every model forbids unknown fields.
"""

from __future__ import annotations

import fnmatch
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts.ids import ResourceId


class JobKind(StrEnum):
    """The workloads gpurelay runs."""

    LAP_COMPARE = "lap_compare"
    POSE = "pose"
    NERF = "nerf"
    SPLAT = "splat"
    VLM = "vlm"


SESSION_KINDS: frozenset[JobKind] = frozenset({JobKind.SPLAT, JobKind.VLM})
"""Kinds that run as a live, stateful session (frames arrive over NATS while it runs)."""
BATCH_KINDS: frozenset[JobKind] = frozenset(set(JobKind) - SESSION_KINDS)
"""Kinds that run once over uploaded inputs and finish on their own."""
PIPELINE_KINDS: frozenset[JobKind] = frozenset({JobKind.NERF})
"""Batch kinds that report ``job.stage`` events (several stages in one job)."""

_STRICT = ConfigDict(extra="forbid", frozen=True)

# A relative path of safe segments: no leading '/', no '..', no backslash, no white space.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
_EVENT_GLOB = re.compile(r"^[a-z_*]+(\.[a-z_*]+)*$")
ALERT_PATTERN_MAX = 256
"""Longest alert pattern accepted (a bound on what a regular expression search can cost)."""


def _safe_relative_path(value: str, what: str) -> str:
    if not _SAFE_PATH.fullmatch(value):  # each segment starts with [A-Za-z0-9_], so no '..'
        raise ValueError(f"{what} must be a relative path of letters, digits and _ - . / (got {value!r})")
    return value


# -- inputs ---------------------------------------------------------------------------------------
class InputRef(BaseModel):
    """One job input: exactly one of ``{"upload_id": ...}`` or ``{"url": "https://..."}``."""

    model_config = _STRICT

    upload_id: ResourceId | None = None
    url: HttpUrl | None = None

    @field_validator("url")
    @classmethod
    def _https_only(cls, value: HttpUrl | None) -> HttpUrl | None:
        if value is not None and value.scheme != "https":
            raise ValueError("input urls must use https")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> InputRef:
        if (self.upload_id is None) == (self.url is None):
            raise ValueError("an input is exactly one of {'upload_id': ...} or {'url': 'https://...'}")
        return self

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


class JobInputs(BaseModel):
    """Base of the per-kind input maps: rejects unknown and missing names with a clear message."""

    model_config = _STRICT
    kind_name: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _check_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            expected = ", ".join(cls.model_fields) or "none (frames come live)"
            unknown = sorted(str(name) for name in data if name not in cls.model_fields)
            if unknown:
                raise PydanticCustomError(
                    "unknown_input",
                    "unknown input {names} for kind {kind}; expected: {expected}",
                    {"names": ", ".join(map(repr, unknown)), "kind": cls.kind_name, "expected": expected},
                )
            missing = [name for name, f in cls.model_fields.items() if f.is_required() and name not in data]
            if missing:
                raise PydanticCustomError(
                    "missing_input",
                    "missing required input {names} for kind {kind}",
                    {"names": ", ".join(map(repr, missing)), "kind": cls.kind_name},
                )
        return data

    def refs(self) -> dict[str, InputRef]:
        """The inputs that are set, by name."""
        return {name: value for name in type(self).model_fields if isinstance(value := getattr(self, name), InputRef)}


class LapCompareInputs(JobInputs):
    """``video``: the lap to analyse; ``reference``: an optional second lap to align against."""

    kind_name: ClassVar[str] = "lap_compare"
    video: InputRef
    reference: InputRef | None = None


class PoseInputs(JobInputs):
    """``video``: the match video."""

    kind_name: ClassVar[str] = "pose"
    video: InputRef


class NerfInputs(JobInputs):
    """``images``: a zip of photos of the object."""

    kind_name: ClassVar[str] = "nerf"
    images: InputRef


class SplatInputs(JobInputs):
    """None: a splat session's frames and joint angles arrive live."""

    kind_name: ClassVar[str] = "splat"


class VlmInputs(JobInputs):
    """None: a VLM session's frames arrive live."""

    kind_name: ClassVar[str] = "vlm"


# -- params ---------------------------------------------------------------------------------------
class JobParams(BaseModel):
    """Base of the per-kind parameter models."""

    model_config = _STRICT


class LapCompareParams(JobParams):
    """Dense optical flow on one or two lap videos."""

    flow_method: Literal["farneback", "dis"] = "farneback"
    downscale_width: int = Field(default=640, ge=64, le=1920, description="Frames are resized to this width.")
    max_duration_s: float = Field(default=600.0, gt=0, le=3600, description="Longer videos fail with video_too_long.")
    fps_sample: float | None = Field(default=None, gt=0, le=240, description="None: every frame.")


class PoseParams(JobParams):
    """YOLO pose estimation (and tracking) on a video."""

    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Weights file (.pt, .onnx, .engine). null: the deployment's default "
        "(GPURELAY_POSE_MODEL on the workers, else yolo26n-pose.pt).",
    )
    batch_size: int = Field(default=8, ge=1, le=64)
    conf: float = Field(default=0.25, ge=0.0, le=1.0)
    iou: float = Field(default=0.7, ge=0.0, le=1.0)
    imgsz: int = Field(default=640, ge=64, le=1920, multiple_of=32)
    track: bool = True
    vid_stride: int = Field(default=1, ge=1, le=30)

    @field_validator("model")
    @classmethod
    def _model_path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _safe_relative_path(value, "model")
        if not value.endswith((".pt", ".onnx", ".engine")):
            raise ValueError("model must end with .pt, .onnx or .engine")
        return value


class NerfParams(JobParams):
    """COLMAP → NeRF training → a turntable render of ``render_frames`` frames."""

    iterations: int = Field(default=30_000, ge=100, le=200_000)
    render_frames: int = Field(default=120, ge=1, le=720)
    resolution: int = Field(default=800, ge=64, le=4096, description="Square render size in pixels.")
    transparent: bool = True
    batch_size: int = Field(default=24, ge=1, le=720, description="Frames rendered per batch.")
    matcher: Literal["exhaustive", "sequential"] = "exhaustive"


class SplatParams(JobParams):
    """Live Gaussian-splat training from streamed frames and joint angles."""

    chunk_every_n_frames: int = Field(default=30, ge=1, le=10_000)
    max_gaussians: int = Field(default=500_000, ge=1_000, le=10_000_000)
    iterations_per_frame: int = Field(default=50, ge=1, le=1_000)
    sh_degree: int = Field(default=3, ge=0, le=3)
    robot_id: ResourceId | None = Field(default=None, description="The robot whose joint angles to use.")
    max_session_s: float = Field(default=3600.0, gt=0, le=86_400)


class VlmAlert(JobParams):
    """Raise an alert when a chunk's answer matches ``pattern`` (a regular expression)."""

    pattern: str = Field(min_length=1, max_length=ALERT_PATTERN_MAX, description="Searched for in each answer.")
    message: str | None = Field(default=None, max_length=500, description="The alert's text; default: the pattern.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return value


class VlmParams(JobParams):
    """Chunked inference on a stateful vision-language model session.

    Frames are grouped into chunks (closed at ``chunk_frames`` frames or ``chunk_seconds``,
    whichever comes first); each chunk's answer joins the conversation, which keeps the last
    ``context_tokens`` tokens of earlier turns as context for the next chunk.
    """

    model: str | None = Field(
        default=None, min_length=1, max_length=128, description="A model the deployment allows; None: its default."
    )
    prompt: str = Field(default="Describe what happens in these frames.", min_length=1, max_length=4000)
    system_prompt: str | None = Field(default=None, min_length=1, max_length=4000)
    chunk_frames: int = Field(default=8, ge=1, le=64, description="A chunk closes after this many frames.")
    chunk_seconds: float = Field(
        default=2.0, gt=0, le=60, description="A chunk also closes this many seconds after its first frame."
    )
    max_images_per_chunk: int = Field(
        default=4, ge=1, le=16, description="Frames of a chunk shown to the model (evenly spaced, first and last kept)."
    )
    max_new_tokens: int = Field(default=256, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0: greedy decoding.")
    context_tokens: int = Field(
        default=2048, ge=0, le=32_768, description="Token budget of earlier turns kept as context (oldest dropped)."
    )
    alert: VlmAlert | None = None
    idle_timeout_s: float = Field(default=300.0, gt=0, le=3600, description="The session ends after this long idle.")
    max_session_s: float = Field(default=3600.0, gt=0, le=86_400)

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        return None if value is None else _safe_relative_path(value, "model")


# -- specs ----------------------------------------------------------------------------------------
class WebhookTarget(BaseModel):
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


class JobSpecBase(BaseModel):
    """Fields every spec has; the concrete specs narrow ``kind``, ``inputs`` and ``params``."""

    model_config = _STRICT

    kind: str
    inputs: JobInputs
    params: JobParams
    webhook: WebhookTarget | None = None

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


class SplatSpec(JobSpecBase):
    """A live Gaussian-splat session."""

    kind: Literal["splat"] = "splat"
    inputs: SplatInputs = Field(default_factory=SplatInputs)
    params: SplatParams = Field(default_factory=SplatParams)


class VlmSpec(JobSpecBase):
    """A live VLM session."""

    kind: Literal["vlm"] = "vlm"
    inputs: VlmInputs = Field(default_factory=VlmInputs)
    params: VlmParams = Field(default_factory=VlmParams)


JobSpec = Annotated[
    LapCompareSpec | PoseSpec | NerfSpec | SplatSpec | VlmSpec,
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
}
"""The spec model of each kind."""


def parse_job_spec(data: Any) -> JobSpec:
    """Validate a spec from Python data (a dict from JSON); raises ``pydantic.ValidationError``."""
    return JobSpecAdapter.validate_python(data)
