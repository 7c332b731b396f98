"""Reading robots: the list (``GET /v1/robots``) and a robot's joint history from the TELEMETRY stream
(``GET /v1/robots/{robot_id}/joints``)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from pydantic import ConfigDict, Field

from contracts.base import Contract
from contracts.events.robots import JointSample
from contracts.ids import JobId, ResourceId
from contracts.job_parts import SessionState

_BODY = ConfigDict(extra="forbid")


class RobotSession(Contract):
    """The live session a robot's joint angles go to."""

    model_config = _BODY

    id: JobId
    kind: str
    state: SessionState


class RobotOut(Contract):
    """A robot that sent joint angles lately (it is forgotten ``robot_latest_ttl_s`` after its last)."""

    model_config = _BODY

    id: ResourceId
    last_sample_at: datetime = Field(description="The latest sample's time (its ts).")
    joint_count: int = Field(ge=1, description="Joints in the latest sample.")
    session: RobotSession | None = Field(default=None, description="The session bound to it, while one runs.")


class RobotList(Contract):
    """The tenant's robots (a robot-bound token: its robot), by id."""

    model_config = _BODY

    items: list[RobotOut]


class JointRecord(Contract):
    """One stored sample: the sample, its place in the stream and when gpurelay received it."""

    model_config = _BODY

    seq: int = Field(ge=1, description="The TELEMETRY stream sequence: the history's order.")
    received_at: datetime = Field(description="When the gateway stored it (since/until compare this).")
    sample: JointSample


class JointHistory(Contract):
    """One page of a robot's samples, oldest first; pass ``next_cursor`` as ``cursor`` for the next."""

    model_config = _BODY

    robot_id: ResourceId
    items: list[JointRecord]
    next_cursor: str | None = Field(default=None, description="None when the page reached the end (or until).")


def encode_seq_cursor(seq: int) -> str:
    """The opaque cursor after stream sequence ``seq``."""
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).rstrip(b"=").decode()


def decode_seq_cursor(cursor: str) -> int | None:
    """The stream sequence a cursor holds, ``None`` when it is not one."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    head, _, digits = text.partition(":")
    if head != "seq" or not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        return None
    return int(digits)
