"""``export_recording``: each format's file, named for the session, and the job's parameters checked."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from contracts.specs.job_params import SessionExportParams
from modal_workers.recordings.export import export_recording
from tests.support.recordings import session_recording


@pytest.mark.parametrize(
    ("fmt", "name", "content_type", "magic"),
    [
        ("lerobot", "ses_rec1.lerobot.zip", "application/zip", b"PK\x03\x04"),
        ("mcap", "ses_rec1.mcap", "application/x-mcap", b"\x89MCAP0\r\n"),
        ("rrd", "ses_rec1.rrd", "application/octet-stream", b"RRF2"),
    ],
)
def test_each_format_writes_its_file(tmp_path: Path, fmt: str, name: str, content_type: str, magic: bytes) -> None:
    params = SessionExportParams.model_validate({"session_id": "ses_rec1", "format": fmt})
    out = export_recording(session_recording(4), params, tmp_path)
    assert (out.name, out.content_type, out.path) == (name, content_type, tmp_path / name)
    assert out.path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # nothing else left in the scratch folder


def test_lerobot_params_reach_the_dataset(tmp_path: Path) -> None:
    params = SessionExportParams(
        session_id="ses_rec1", format="lerobot", fps=12, split_on_reset=True, video_codec="h264", task="stack"
    )
    out = export_recording(session_recording(6, reset_after=2), params, tmp_path)
    with zipfile.ZipFile(out.path) as archive:
        archive.extractall(tmp_path / "ds")
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert (info["fps"], info["total_episodes"], info["total_frames"]) == (12, 2, 6)
    assert info["features"]["observation.images.main"]["info"]["video.codec"] == "h264"
    assert pq.read_table(tmp_path / "ds/meta/tasks.parquet")["task"].to_pylist() == ["stack"]


@pytest.mark.parametrize(
    "params",
    [
        {"session_id": "ses_rec1", "format": "csv"},
        {"session_id": "ses_rec1", "format": "lerobot", "fps": 0},
        {"session_id": "ses_rec1", "format": "lerobot", "video_codec": "vp9"},
        {"session_id": "../x", "format": "mcap"},
        {"session_id": "ses_rec1", "format": "mcap", "extra": 1},
    ],
)
def test_bad_params_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SessionExportParams.model_validate(params)
