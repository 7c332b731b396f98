"""A recording as an MCAP file (Foxglove), written with the ``mcap`` library, in time order.

Every message's log time and publish time is the item's own time (a frame's capture time, a joint
sample's sample time, a result's, control's or snapshot's publish time), in UNIX nanoseconds:

- ``/camera/<camera>``: ``foxglove.CompressedImage`` (protobuf; the schema is registered from
  foxglove-schemas-protobuf's descriptors by mcap-protobuf-support): ``timestamp``, ``frame_id``
  (the camera), ``data`` (the stored JPEG or PNG as it is), ``format`` (``jpeg`` or ``png``); the
  message's ``sequence`` is the frame's ``seq``.
- ``/joints``: JSON, schema ``gpurelay.JointState`` (JSON Schema): ``name`` and ``position``
  (radians) of each sample matched to a frame (once per sample), and ``frame_seq``.
- ``/results``: JSON, ``gpurelay.SessionResult``: ``chunk``, ``first_seq``, ``last_seq``, ``text``, ``data``.
- ``/control``: JSON, ``gpurelay.SessionControl``: ``action`` (stop, reset) and ``reason``.
- each snapshot as an attachment (its name, content type and time); the session as metadata
  ``gpurelay.session``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.recordings.manifest import RecordedFrame, RecordedSnapshot
from modal_workers.recordings.model import Recording

JOINTS_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "array", "items": {"type": "string"}},
        "position": {"type": "array", "items": {"type": "number"}, "description": "radians"},
        "frame_seq": {"type": "integer"},
    },
}
RESULT_SCHEMA = {
    "type": "object",
    "properties": {
        "chunk": {"type": "integer"},
        "first_seq": {"type": "integer"},
        "last_seq": {"type": "integer"},
        "text": {"type": ["string", "null"]},
        "data": {"type": "object"},
    },
}
CONTROL_SCHEMA = {
    "type": "object",
    "properties": {"action": {"type": "string", "enum": ["stop", "reset"]}, "reason": {"type": ["string", "null"]}},
}
JSON_CHANNELS = {
    "/joints": ("gpurelay.JointState", JOINTS_SCHEMA),
    "/results": ("gpurelay.SessionResult", RESULT_SCHEMA),
    "/control": ("gpurelay.SessionControl", CONTROL_SCHEMA),
}


def ns(ts: float) -> int:
    """UNIX seconds → nanoseconds."""
    return round(ts * 1e9)


def write_mcap(recording: Recording, path: Path) -> Path:
    """Write ``recording`` to ``path`` as MCAP (zstd chunks)."""
    from mcap.writer import Writer

    m = recording.manifest
    items: list[tuple[int, int, str, Any]] = []  # (log time, order, topic or "", what)
    for frame in m.frames:
        items.append((ns(frame.ts), len(items), f"/camera/{frame.camera}", frame))
    sent: set[float] = set()
    for frame in (f for f in m.frames if f.joints is not None and f.joints.ts not in sent):
        assert frame.joints is not None
        sent.add(frame.joints.ts)
        sample = {"name": m.joint_names, "position": frame.joints.angles, "frame_seq": frame.seq}
        items.append((ns(frame.joints.ts), len(items), "/joints", sample))
    for result in m.results:
        body = result.model_dump(include={"chunk", "first_seq", "last_seq", "text", "data"})
        items.append((ns(result.ts), len(items), "/results", body))
    for control in m.controls:
        items.append((ns(control.ts), len(items), "/control", {"action": control.action, "reason": control.reason}))
    items.extend((ns(s.ts), len(items), "", s) for s in m.snapshots)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        writer: Any = Writer(stream)
        writer.start(profile="", library="gpurelay")
        channels = _channels(writer, recording.cameras())
        for at, _, topic, what in sorted(items, key=lambda item: item[:2]):
            if isinstance(what, RecordedSnapshot):
                writer.add_attachment(at, at, what.name, what.content_type, recording.read(what.key))
                continue
            data, sequence = (
                (_image(recording, what, at), what.seq) if topic.startswith("/camera/") else (_json(what), 0)
            )
            writer.add_message(channels[topic], log_time=at, publish_time=at, data=data, sequence=sequence)
        writer.add_metadata("gpurelay.session", _session(recording))
        writer.finish()
    return path


def _channels(writer: Any, cameras: list[str]) -> dict[str, int]:
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from mcap.well_known import MessageEncoding, SchemaEncoding
    from mcap_protobuf.schema import register_schema

    channels: dict[str, int] = {}
    image_schema = register_schema(writer, CompressedImage)
    for camera in cameras:
        topic = f"/camera/{camera}"
        channels[topic] = writer.register_channel(topic, MessageEncoding.Protobuf, image_schema)
    for topic, (name, schema) in JSON_CHANNELS.items():
        schema_id = writer.register_schema(name, SchemaEncoding.JSONSchema, json.dumps(schema).encode())
        channels[topic] = writer.register_channel(topic, MessageEncoding.JSON, schema_id)
    return channels


def _image(recording: Recording, frame: RecordedFrame, at: int) -> bytes:
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

    message = CompressedImage(frame_id=frame.camera, data=recording.image(frame))
    message.format = "jpeg" if frame.content_type == "image/jpeg" else "png"
    message.timestamp.FromNanoseconds(at)
    return bytes(message.SerializeToString())


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _session(recording: Recording) -> dict[str, str]:
    m = recording.manifest
    return {
        "session_id": m.session_id,
        "kind": m.kind,
        "robot_type": m.robot_type or "",
        "joint_names": json.dumps(m.joint_names),
        "task": m.task,
    }
