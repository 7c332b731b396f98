"""A live session's recording: what ``GET /v1/sessions/{id}/recording`` answers, and what exports read.

A :class:`RecordingManifest` lists, in order, the session's frames (by reference to their stored
copies: ``key`` in the session's storage, never the bytes), the joint sample the worker matched to
each frame (nearest in time within the session's ``joint_tolerance_ms``), the control messages, the
results, alerts and snapshots, and the session's params. Times are UNIX seconds: a frame's ``ts`` is
its capture time (``processed_at`` the time the worker took it), a joint sample's its sample time, a
control's, result's, alert's or snapshot's the time it was published.

Joint angles are radians, in ``joint_names`` order (by default the SO-101's six joints,
:data:`SO101_JOINT_NAMES`), exactly as the robot's samples were posted.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from contracts.base import Contract, JsonObject
from contracts.events.sessions import SessionAlertPayload, SessionResultPayload

_STRICT = ConfigDict(extra="forbid", frozen=True)

SO101_JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
"""The SO-100/101 arm's joints, in the order its samples carry them."""
MAX_RECORDED_FRAMES = 216_000
"""Most frames one recording lists: the gateway's 60 frames/s for the longest session (1 h)."""
MAX_RECORDED_EVENTS = 100_000
"""Most control messages, results or snapshots one recording lists (each)."""
MAX_JOINTS = 32
"""Most joints one sample carries (as a robot sample)."""
CAMERA_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
"""A camera's name: it becomes a LeRobot feature key (``observation.images.<camera>``) and a topic."""
DEFAULT_CAMERA = "main"


class MatchedJoints(Contract):
    """The robot's joint sample matched to a frame."""

    model_config = _STRICT

    ts: float = Field(description="Sample time, UNIX seconds.")
    angles: list[float] = Field(min_length=1, max_length=MAX_JOINTS, description="Radians, in joint_names order.")


class RecordedFrame(Contract):
    """One frame: where its stored copy is, when it was captured, and its matched joints."""

    model_config = _STRICT

    seq: int = Field(ge=1, description="The frame's number in its session, from 1.")
    ts: float = Field(description="Capture time, UNIX seconds.")
    camera: str = Field(default=DEFAULT_CAMERA, pattern=CAMERA_PATTERN)
    content_type: Literal["image/jpeg", "image/png"]
    key: str = Field(min_length=1, max_length=1024, description="The stored copy's key in the session's storage.")
    joints: MatchedJoints | None = Field(default=None, description="None: no sample within the tolerance.")
    pose: list[float] | None = Field(
        default=None, min_length=16, max_length=16, description="The camera→world pose sent with it (4 × 4, row-major)."
    )
    processed_at: float | None = Field(default=None, description="When the worker took the frame, UNIX seconds.")


class RecordedControl(Contract):
    """A stop or reset the session received."""

    model_config = _STRICT

    ts: float
    action: Literal["stop", "reset"]
    reason: str | None = Field(default=None, max_length=500)


class RecordedResult(SessionResultPayload):
    """A ``session.result`` the worker emitted, with the time it was published."""

    ts: float


class RecordedAlert(SessionAlertPayload):
    """A ``session.alert`` the worker emitted, with the time it was published."""

    ts: float


class RecordedSnapshot(Contract):
    """A live output the worker stored (a PLY for splat, JSON for the echo workload)."""

    model_config = _STRICT

    ts: float
    seq: int = Field(ge=0, description="The last frame the snapshot includes.")
    name: str = Field(min_length=1, max_length=200, description="e.g. snapshot.ply")
    content_type: str = Field(min_length=1, max_length=100)
    key: str = Field(min_length=1, max_length=1024)


class RecordingManifest(Contract):
    """A session's recording, in the order things happened (frames by ``seq``, the rest by ``ts``)."""

    model_config = _STRICT

    session_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=64, description="The session's kind (splat, vlm, …).")
    robot_type: str | None = Field(default="so101", max_length=64)
    joint_names: list[str] = Field(default_factory=lambda: list(SO101_JOINT_NAMES), min_length=1, max_length=MAX_JOINTS)
    task: str = Field(default="", max_length=1000, description="What the episode shows (LeRobot's task).")
    frames: list[RecordedFrame] = Field(default_factory=list, max_length=MAX_RECORDED_FRAMES)
    controls: list[RecordedControl] = Field(default_factory=list, max_length=MAX_RECORDED_EVENTS)
    results: list[RecordedResult] = Field(default_factory=list, max_length=MAX_RECORDED_EVENTS)
    snapshots: list[RecordedSnapshot] = Field(default_factory=list, max_length=MAX_RECORDED_EVENTS)
    alerts: list[RecordedAlert] = Field(default_factory=list, max_length=MAX_RECORDED_EVENTS)
    params: JsonObject = Field(default_factory=dict, description="The session's params (what it ran with).")
    replay_of: str | None = Field(default=None, max_length=64, description="The session whose recording fed it.")
    started_at: float | None = Field(default=None, description="When the worker started recording, UNIX seconds.")
    ended_at: float | None = Field(default=None, description="When the session ended (None while it runs).")
    frames_left_out: int = Field(default=0, ge=0, description="Frames the worker took past the most one lists.")

    @model_validator(mode="after")
    def _consistent(self) -> RecordingManifest:
        seqs = [frame.seq for frame in self.frames]
        if any(b <= a for a, b in itertools.pairwise(seqs)):
            raise ValueError("frames must be in increasing seq order")
        width = len(self.joint_names)
        if any(f.joints is not None and len(f.joints.angles) != width for f in self.frames):
            raise ValueError(f"every matched joint sample must carry {width} angles (joint_names)")
        return self
