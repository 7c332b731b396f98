"""A recording as a Rerun .rrd, read back by rerun-sdk's RRD reader: images, joint scalars, results, points;
and a clear error when the ``rerun`` extra is missing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rerun.chunk import RrdReader

from modal_workers.recordings.model import Recording
from modal_workers.recordings.rerun_export import ply_points, write_rrd
from modal_workers.runtime.worker_runtime import PermanentError
from tests.support.recordings import angles, session_recording, splat_ply


def columns_of(path: Path) -> dict[str, dict[str, list[Any]]]:
    """Entity → component or timeline → every value logged on a timeline (static chunks left out)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for chunk in RrdReader(path).stream().to_chunks():
        if chunk.is_static:
            continue
        batch = chunk.to_record_batch()
        entity = out.setdefault(chunk.entity_path, {})
        for name in batch.schema.names:
            column = batch[name]
            if str(column.type).startswith("timestamp"):
                column = column.cast("int64")
            entity.setdefault(name, []).extend(column.to_pylist())
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, dict[str, dict[str, list[Any]]]]:
    recording = session_recording(10, unmatched=(3,))
    path = write_rrd(recording, tmp_path_factory.mktemp("rrd") / "session.rrd")
    return recording, columns_of(path)


def test_recording_id_is_the_session(tmp_path: Path) -> None:
    path = write_rrd(session_recording(3, session_id="ses_rrd_id"), tmp_path / "s.rrd")
    (entry,) = RrdReader(path).recordings()
    assert (entry.application_id, entry.recording_id) == ("gpurelay", "ses_rrd_id")


def test_images_at_their_capture_times(exported: tuple[Recording, dict[str, dict[str, list[Any]]]]) -> None:
    recording, columns = exported
    camera = columns["/camera/main"]
    assert len(camera["EncodedImage:blob"]) == 10
    assert camera["seq"] == [f.seq for f in recording.manifest.frames]
    assert camera["capture_time"] == [round(f.ts * 1e9) for f in recording.manifest.frames]
    assert [bytes(blob[0]) for blob in camera["EncodedImage:blob"]] == [
        recording.image(f) for f in recording.manifest.frames
    ]
    assert set(columns) >= {"/camera/main", "/results", "/control", "/snapshots/snapshot"}
    assert "log_time" not in camera  # times are the session's, not the export's


def test_joint_scalars_equal_the_posted_angles(exported: tuple[Recording, dict[str, dict[str, list[Any]]]]) -> None:
    recording, columns = exported
    matched = [f for f in recording.manifest.frames if f.joints is not None]
    for j, name in enumerate(recording.manifest.joint_names):
        entity = columns[f"/joints/{name}"]
        assert [values[0] for values in entity["Scalars:scalars"]] == [angles(i)[j] for i in range(10) if i != 3]
        assert entity["capture_time"] == [round(f.joints.ts * 1e9) for f in matched if f.joints]


def test_results_control_and_splat_points(exported: tuple[Recording, dict[str, dict[str, list[Any]]]]) -> None:
    _, columns = exported
    texts = [t[0] if isinstance(t, list) else t for t in columns["/results"]["TextLog:text"]]
    assert texts == ["[1..2] an arm reaches for a cube", '[3..10] {"loss": 0.25}']
    control = columns["/control"]["TextLog:text"]
    assert [t[0] if isinstance(t, list) else t for t in control] == ["stop"]
    (positions,) = columns["/snapshots/snapshot"]["Points3D:positions"]
    assert [p[0] for p in positions] == list(range(7))
    (colors,) = columns["/snapshots/snapshot"]["Points3D:colors"]
    assert len(colors) == 7


def test_ply_points_colours_and_a_bad_ply() -> None:
    positions, colors = ply_points(splat_ply(3))
    assert positions.shape == (3, 3)
    assert colors is not None
    assert colors[0].tolist() == [int(np.clip(0.5 + 0.28209479177387814, 0, 1) * 255), 127, 127]
    with pytest.raises(PermanentError) as caught:
        ply_points(b"not a ply")
    assert caught.value.code == "invalid_ply"


def test_without_the_extra_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "rerun", None)  # what a venv without rerun-sdk imports
    with pytest.raises(PermanentError, match=r"gpurelay\[rerun\]") as caught:
        write_rrd(session_recording(3), tmp_path / "s.rrd")
    assert caught.value.code == "format_unavailable"
    assert not (tmp_path / "s.rrd").exists()
