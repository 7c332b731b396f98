"""Where a session's frames come from when no client sends them: a LeRobot dataset or another session's recording.

A session created with ``source`` is fed by its own worker through the path live frames take (FRAMES
and TELEMETRY, numbered by seq from 1), so its recording, a resumed worker and every consumer see
the frames as they would a client's:

* :class:`DatasetSource` — an uploaded LeRobotDataset v3 zip: each row's image of one camera and its
  ``observation.state`` (as joint angles, radians) at the row's time; a new episode is a reset.
* :class:`RecordingSource` — an ended session's recording (what ``POST /v1/sessions/{id}/replay``
  starts): its frames, matched joints and resets, so another model or other params see the same input.

``speed`` is 1.0 (recorded timing; 2.0 twice as fast …) or ``"max"``: as fast as the worker takes the
frames, never more than its frame buffer ahead, so none is dropped. After the last frame the feeder
asks the session to stop, so it ends with its final outputs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from contracts.base import Contract
from contracts.ids import ResourceId

_STRICT = ConfigDict(extra="forbid", frozen=True)
MAX_SPEED = 16.0
Speed = Annotated[float, Field(gt=0, le=MAX_SPEED)] | Literal["max"]
"""A multiple of the recorded timing, or ``"max"`` (as fast as the worker takes the frames)."""


class DatasetSource(Contract):
    """An uploaded LeRobotDataset v3 zip fed as the session's frames and joint angles."""

    model_config = _STRICT

    upload_id: ResourceId = Field(description="A completed upload of the dataset, zipped.")
    episode: int | None = Field(
        default=None, ge=0, le=10_000_000, description="Only this episode_index; None: every episode, each a reset."
    )
    camera: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.]+$",
        description="The camera (observation.images.<name>, or the name); None: the dataset's first.",
    )
    speed: Speed = Field(default=1.0, description="1.0: recorded timing; 'max': as fast as the worker takes them.")


class RecordingSource(Contract):
    """An ended session's recording fed again (a replay)."""

    model_config = _STRICT

    session_id: ResourceId = Field(description="An ended session of this tenant that has a recording.")
    speed: Speed = Field(default=1.0, description="1.0: recorded timing; 'max': as fast as the worker takes them.")


SessionSource = DatasetSource | RecordingSource
"""``{upload_id, episode?, camera?, speed?}`` or ``{session_id, speed?}``."""
