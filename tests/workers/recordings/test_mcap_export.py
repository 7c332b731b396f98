"""A recording as MCAP, read back by the ``mcap`` reader (protobuf images decoded by mcap-protobuf-support)
and by Rerun's MCAP reader: channels, schemas, message counts, log times = capture times, bytes as stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory
from rerun.chunk import McapReader as RerunMcapReader

from modal_workers.recordings.mcap_export import write_mcap
from modal_workers.recordings.model import Recording
from tests.support.recordings import angles, session_recording, splat_ply


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, Path]:
    recording = session_recording(9, cameras=("main", "wrist"), unmatched=(4,))
    return recording, write_mcap(recording, tmp_path_factory.mktemp("mcap") / "session.mcap")


def test_channels_schemas_and_counts(exported: tuple[Recording, Path]) -> None:
    _, path = exported
    with path.open("rb") as stream:
        summary = make_reader(stream).get_summary()
    assert summary is not None
    assert summary.statistics is not None
    topics = {
        c.topic: (c.message_encoding, summary.schemas[c.schema_id].name, summary.schemas[c.schema_id].encoding)
        for c in summary.channels.values()
    }
    assert topics == {
        "/camera/main": ("protobuf", "foxglove.CompressedImage", "protobuf"),
        "/camera/wrist": ("protobuf", "foxglove.CompressedImage", "protobuf"),
        "/joints": ("json", "gpurelay.JointState", "jsonschema"),
        "/results": ("json", "gpurelay.SessionResult", "jsonschema"),
        "/control": ("json", "gpurelay.SessionControl", "jsonschema"),
    }
    counts = {summary.channels[i].topic: n for i, n in summary.statistics.channel_message_counts.items()}
    assert counts == {"/camera/main": 9, "/camera/wrist": 9, "/joints": 8, "/results": 2, "/control": 1}


def test_images_log_times_and_bytes(exported: tuple[Recording, Path]) -> None:
    recording, path = exported
    frames = {(f.camera, f.seq): f for f in recording.manifest.frames}
    with path.open("rb") as stream:
        decoded = list(make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages(
            topics=["/camera/main", "/camera/wrist"], log_time_order=True))  # fmt: skip
    assert len(decoded) == 18
    for _, channel, message, image in decoded:
        frame = frames[(channel.topic.rpartition("/")[2], message.sequence)]
        assert message.log_time == message.publish_time == round(frame.ts * 1e9)
        assert image.timestamp.ToNanoseconds() == message.log_time
        assert (image.frame_id, image.format) == (frame.camera, "jpeg")
        assert image.data == recording.image(frame)


def test_joints_results_control_attachment_metadata(exported: tuple[Recording, Path]) -> None:
    recording, path = exported
    by_topic: dict[str, list[tuple[int, dict[str, object]]]] = {}
    with path.open("rb") as stream:
        reader = make_reader(stream)
        for _, channel, message in reader.iter_messages(topics=["/joints", "/results", "/control"]):
            by_topic.setdefault(channel.topic, []).append((message.log_time, json.loads(message.data)))
        attachments = list(reader.iter_attachments())
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
    matched = [f for f in recording.manifest.frames if f.camera == "main" and f.joints is not None]
    assert [t for t, _ in by_topic["/joints"]] == [round(f.joints.ts * 1e9) for f in matched if f.joints]
    assert [m["position"] for _, m in by_topic["/joints"]] == [angles(i) for i in range(9) if i != 4]
    assert by_topic["/joints"][0][1]["name"] == recording.manifest.joint_names
    assert [m["text"] for _, m in by_topic["/results"]] == ["an arm reaches for a cube", None]
    assert by_topic["/results"][1][1]["data"] == {"loss": 0.25}
    assert [m["action"] for _, m in by_topic["/control"]] == ["stop"]
    assert [(a.name, a.data) for a in attachments] == [("snapshot.ply", splat_ply())]
    assert metadata["gpurelay.session"]["session_id"] == "ses_rec1"


def test_rerun_decodes_the_mcap(exported: tuple[Recording, Path]) -> None:
    """Rerun's foxglove decoder turns each CompressedImage into an EncodedImage at its log time."""
    recording, path = exported
    images: dict[str, list[int]] = {}  # entity → log times (ns)
    raw: dict[str, int] = {}
    for chunk in RerunMcapReader(path).stream().to_chunks():
        names = chunk.to_record_batch().schema.names
        if "EncodedImage:blob" in names:
            times = chunk.to_record_batch()["message_log_time"].cast("int64").to_pylist()
            images.setdefault(chunk.entity_path, []).extend(times)
        elif "McapMessage:data" in names:
            raw[chunk.entity_path] = raw.get(chunk.entity_path, 0) + chunk.num_rows
    for camera in ("main", "wrist"):
        logged = sorted(images[f"/camera/{camera}"])
        assert logged == [round(f.ts * 1e9) for f in recording.manifest.frames if f.camera == camera]
    assert raw == {"/joints": 8, "/results": 2, "/control": 1}
