"""Robot joint-angle API (``/v1/robots/{robot_id}/joints``): bodies, WebSocket messages, wire form.

``POST`` takes one :class:`JointSampleIn`-shaped sample or a batch ``{"samples": [...]}``, both
as :class:`JointsPost`; the WebSocket takes one :class:`JointSampleIn` per text message and answers
with :class:`JointsWsAck` and :class:`JointsWsError`. The robot id comes from the path, the tenant
from the API key.

Each accepted sample becomes one ``robot.joints`` :class:`~contracts.envelope.EventEnvelope` on
``robots.{tenant}.{robot_id}.joints``. At telemetry rates the envelope is written by
:class:`JointEventEncoder` with string formatting rather than pydantic (the sample was validated on
the way in, every id in it is a safe token, so nothing needs escaping); the result parses as an
``EventEnvelope`` whose ``data`` is a :class:`~contracts.events.robots.JointSample`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import uuid_utils
from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, TypeAdapter, model_validator

from contracts.base import Contract
from contracts.events.robots import MAX_BATCH, MAX_JOINTS, Angle
from contracts.ids import validate_id

JointAngles = Annotated[list[Angle], Field(min_length=1, max_length=MAX_JOINTS)]
"""A sample's angles in radians, one per joint, in joint order."""


def _in_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a time whose UTC form falls outside years 1-9999 is invalid, not an overflow."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time in UTC must fall within years 1 to 9999") from None


Ts = Annotated[
    Annotated[AwareDatetime, AfterValidator(_in_utc)] | None,
    Field(description="When the angles were read: RFC 3339 with an offset, or Unix seconds (default: now)."),
]
Seq = Annotated[int | None, Field(ge=0, le=2**63 - 1, description="The robot's own sample counter, if any.")]


class JointSampleIn(Contract):
    """One sample as a client sends it (the robot is named by the path)."""

    model_config = ConfigDict(extra="forbid")

    joint_angles: JointAngles
    ts: Ts = None
    seq: Seq = None


class JointsPost(Contract):
    """``POST /v1/robots/{robot_id}/joints``: one sample, or a batch in ``samples`` (oldest first)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["joint_angles"]}, {"required": ["samples"]}]},
    )

    joint_angles: JointAngles | None = None
    ts: Ts = None
    seq: Seq = None
    samples: Annotated[list[JointSampleIn], Field(min_length=1, max_length=MAX_BATCH)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> JointsPost:
        if (self.samples is None) == (self.joint_angles is None):
            raise ValueError("send either joint_angles (one sample) or samples (a batch)")
        if self.samples is not None and (self.ts is not None or self.seq is not None):
            raise ValueError("in a batch, ts and seq belong inside each sample")
        return self

    def as_samples(self) -> list[JointSampleIn]:
        """The samples of the body, oldest first (a single sample is a batch of one)."""
        if self.samples is not None:
            return self.samples
        assert self.joint_angles is not None  # the validator guarantees one form
        return [JointSampleIn.model_construct(joint_angles=self.joint_angles, ts=self.ts, seq=self.seq)]


class JointsAccepted(Contract):
    """The answer to a POST: how many samples were published."""

    accepted: int = Field(ge=0)


class FieldError(Contract):
    """One field at fault: where (``loc``), what (``msg``) and the kind of error (``type``)."""

    loc: list[str | int]
    msg: str
    type: str


class JointsWsAck(Contract):
    """WebSocket → client, periodically and on close: running totals of the connection."""

    type: Literal["ack"] = "ack"
    accepted: int = Field(ge=0, description="Samples published so far, each confirmed by NATS.")
    rejected: int = Field(ge=0, description="Messages refused so far.")


class JointsWsError(Contract):
    """WebSocket → client: message ``index`` (0-based) was refused; the socket stays open."""

    type: Literal["error"] = "error"
    index: int = Field(ge=0)
    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class JointsWsAuth(Contract):
    """Client → WebSocket, first message when no ``Authorization`` header could be sent: the API key."""

    model_config = ConfigDict(extra="forbid")

    auth: str = Field(min_length=1, max_length=256)


class JointsWsControl(Contract):
    """Client → WebSocket: ``close`` asks for a final ack, after which the server closes (1000)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["close"]


def utc_iso(moment: datetime, timespec: str = "auto") -> str:
    """``moment`` in UTC as RFC 3339 with a ``Z``, e.g. ``2026-11-22T10:00:00.123456Z``."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


class JointEventEncoder:
    """Writes ``robot.joints`` envelopes of one tenant's robot as compact JSON bytes, without models.

    ``data(sample, received)`` is the :class:`~contracts.events.robots.JointSample` JSON (also what
    KV ``robots`` keeps as the latest); ``envelope(data, received)`` wraps it with a new UUIDv7 id.
    ``received`` is the receipt time as ``utc_iso(...).encode()``: the envelope's ``time`` and the
    default ``ts``. The angles are written by pydantic-core, as pydantic would write them.
    """

    __slots__ = ("_data_head", "_meta", "_route")

    def __init__(self, tenant: str, robot_id: str, source: str = "gateway") -> None:
        validate_id(tenant, "tenant")
        validate_id(robot_id, "robot id")
        validate_id(source.replace("/", "_"), "source")
        self._data_head = f'{{"robot_id":"{robot_id}","joint_angles":'.encode()
        self._meta = f'","type":"robot.joints","source":"{source}","time":"'.encode()
        self._route = f'","subject":"{robot_id}","tenant":"{tenant}","data":'.encode()

    def data(self, sample: JointSampleIn, received: bytes) -> bytes:
        """The sample's JSON: ``robot_id``, ``joint_angles``, ``ts`` (receipt if absent), ``seq``."""
        ts = received if sample.ts is None else utc_iso(sample.ts).encode()
        seq = b"" if sample.seq is None else b',"seq":%d' % sample.seq
        return b'%s%s,"ts":"%s"%s}' % (self._data_head, _ANGLES.dump_json(sample.joint_angles), ts, seq)

    def envelope(self, data: bytes, received: bytes) -> bytes:
        """The enveloped event, as the bytes to publish."""
        event_id = str(uuid_utils.uuid7()).encode()
        return b'{"specversion":"1.0","id":"%s%s%s%s%s}' % (event_id, self._meta, received, self._route, data)


_ANGLES: TypeAdapter[list[float]] = TypeAdapter(list[float])
