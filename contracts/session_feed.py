"""What a live session's worker is fed: frames, joint samples and control, and how they travel.

On NATS a frame is one message on ``sessions.{tenant}.{id}.frames`` (FRAMES stream): the image
bytes as the body, its description in headers (:data:`H_SEQ`, :data:`H_TS`, ``Content-Type``,
optional :data:`H_POSE`), ``Nats-Msg-Id`` = :func:`contracts.event_ids.frame_msg_id`. Stop and reset are JSON bodies
(:class:`ControlMessage`) on ``sessions.{tenant}.{id}.control`` in the same stream, so a worker sees
them in order with the frames. Joint samples are the robot's ``robot.joints`` envelopes (TELEMETRY).

A worker that cannot reach NATS (Modal) reads the same items from the gateway's feed socket
(``WS /v1/internal/sessions/{id}/feed``): a frame is one binary message (:func:`encode_frame`:
:data:`FRAME_MAGIC`, a 4-byte big-endian header length, the :class:`FeedFrame` header as JSON, then
the image bytes); joints and control are text messages (:class:`FeedJoints`, :class:`FeedControl`).
Each item carries its ``stream_seq`` so a reconnecting worker resumes after the last one it saw. When
it opens, a feed says where the session's FRAMES stood then (:class:`FeedBacklog`): the items up to that
sequence were sent while no worker read them (a session starting, a lost worker's), the rest are live.

A session fed from its source (a dataset, a recording) is fed by its own worker; one that cannot
reach NATS publishes through the gateway (``/v1/internal/sessions/{id}/source``): a frame as the
request's body (``?seq=&ts=``, ``Content-Type``, optional ``Gpurelay-Pose``), a joint sample as
:class:`SourceJoints`, a reset or the stop as :class:`SourceControl`.
"""

from __future__ import annotations

import json
import struct
from typing import Literal

from pydantic import ConfigDict, Field, TypeAdapter

from contracts.base import Contract
from contracts.event_ids import frame_msg_id
from contracts.events.robots import Angle

_STRICT = ConfigDict(extra="forbid", frozen=True)

H_SEQ = "Gpurelay-Seq"
"""Header: the frame's number in its session, from 1."""
H_TS = "Gpurelay-Ts"
"""Header: the frame's capture time, UNIX seconds."""
H_POSE = "Gpurelay-Pose"
"""Header (optional): the camera→world pose sent with the frame, 16 numbers row-major, as JSON."""
FRAME_MAGIC = b"GRF1"
"""First bytes of a frame message on the feed socket."""
IMAGE_TYPES = ("image/jpeg", "image/png")
"""What a frame may be."""

Pose = list[float]
"""A 4 × 4 camera→world matrix, row-major (16 finite numbers)."""


class ControlMessage(Contract):
    """A stop or reset asked of a session (the body of a ``.control`` message)."""

    model_config = _STRICT

    action: Literal["stop", "reset"]
    reason: str | None = Field(default=None, max_length=500)


class FeedFrame(Contract):
    """One frame's description (its bytes follow it on the feed socket)."""

    model_config = _STRICT

    type: Literal["frame"] = "frame"
    seq: int = Field(ge=1)
    ts: float = Field(description="Capture time, UNIX seconds.")
    content_type: Literal["image/jpeg", "image/png"]
    pose: Pose | None = Field(default=None, min_length=16, max_length=16)
    stream_seq: int = Field(ge=0, description="The message's FRAMES stream sequence.")


class FeedJoints(Contract):
    """One joint-angle sample of the session's robot."""

    model_config = _STRICT

    type: Literal["joints"] = "joints"
    ts: float = Field(description="Sample time, UNIX seconds.")
    joint_angles: list[float] = Field(min_length=1, max_length=32)
    stream_seq: int = Field(ge=0, description="The sample's TELEMETRY stream sequence.")


class FeedControl(Contract):
    """A stop or reset, in order with the frames."""

    model_config = _STRICT

    type: Literal["control"] = "control"
    action: Literal["stop", "reset"]
    reason: str | None = Field(default=None, max_length=500)
    stream_seq: int = Field(ge=0, description="The message's FRAMES stream sequence.")


class FeedBacklog(Contract):
    """Where the session's FRAMES stood when the feed opened: its items up to ``stream_seq`` are a backlog;
    and its robot's joint samples up to ``joints_stream_seq`` (those frames' samples among them)."""

    model_config = _STRICT

    type: Literal["backlog"] = "backlog"
    stream_seq: int = Field(ge=0, description="The session's last FRAMES stream sequence when the feed opened.")
    joints_stream_seq: int | None = Field(
        default=None,
        ge=0,
        description="The robot's last TELEMETRY stream sequence when the feed opened, when the feed has samples "
        "up to it still to hand on (none: no robot, or nothing stored since where the feed starts).",
    )


def frame_headers(session_id: str, seq: int, ts: float, content_type: str, pose: Pose | None = None) -> dict[str, str]:
    """The headers of frame ``seq`` on FRAMES (its body is the image): what the gateway's intake and a
    session's source feeder publish alike."""
    headers = {
        "Nats-Msg-Id": frame_msg_id(session_id, seq),
        H_SEQ: str(seq),
        H_TS: repr(ts),
        "Content-Type": content_type,
    }
    if pose is not None:
        headers[H_POSE] = json.dumps(pose)
    return headers


class SourceJoints(Contract):
    """A sourced session's joint sample, posted by its feeder."""

    model_config = _STRICT

    ts: float = Field(ge=0, le=1e11, description="Sample time, UNIX seconds.")
    joint_angles: list[Angle] = Field(min_length=1, max_length=32)


class SourceControl(Contract):
    """A sourced session's reset (``nonce``: the seq of the frame after it) or stop, posted by its feeder."""

    model_config = _STRICT

    action: Literal["stop", "reset"]
    reason: str = Field(default="", max_length=500)
    nonce: int = Field(default=0, ge=0)


class SourcePublished(Contract):
    """How far a sourced session's feeder got: the last frame seq published."""

    model_config = _STRICT

    published: int = Field(ge=0)


FeedText = FeedJoints | FeedControl | FeedBacklog
_TEXT: TypeAdapter[FeedText] = TypeAdapter(FeedText)


def encode_frame(header: FeedFrame, data: bytes) -> bytes:
    """One binary feed message: magic, header length, header JSON, image bytes."""
    head = header.model_dump_json(exclude_none=True).encode()
    return FRAME_MAGIC + struct.pack(">I", len(head)) + head + data


def decode_frame(message: bytes) -> tuple[FeedFrame, bytes]:
    """The header and image bytes of a binary feed message; ``ValueError`` if it is not one."""
    if len(message) < 8 or not message.startswith(FRAME_MAGIC):
        raise ValueError("not a frame message")
    (length,) = struct.unpack(">I", message[4:8])
    if 8 + length > len(message):
        raise ValueError("the frame header runs past the message")
    header = FeedFrame.model_validate(json.loads(message[8 : 8 + length]))
    return header, message[8 + length :]


def decode_text(message: str) -> FeedText:
    """A text feed message; ``pydantic.ValidationError`` if it is not one."""
    return _TEXT.validate_json(message)
