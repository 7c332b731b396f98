"""A session's exports read back by independent readers: pyarrow and PyAV (LeRobot), mcap, rerun-sdk."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq
from mcap.reader import make_reader

DATA = "data/chunk-000/file-000.parquet"
VIDEO = "videos/observation.images.{camera}/chunk-000/file-000.mp4"


def lerobot_rows(archive: Path, folder: Path, camera: str = "main") -> tuple[dict[str, Any], Any, int]:
    """The zipped dataset's ``info.json``, its data table (pyarrow) and its video's decoded frame count (PyAV)."""
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(folder)
    info = json.loads((folder / "meta/info.json").read_text())
    table = pq.read_table(folder / DATA)
    with av.open(str(folder / VIDEO.format(camera=camera))) as container:
        decoded = sum(1 for _ in container.decode(container.streams.video[0]))
    return info, table, decoded


def states(table: Any) -> np.ndarray:
    """``observation.state`` of every row as float32 (rows × joints)."""
    return np.asarray(table["observation.state"].to_pylist(), dtype=np.float32)


def mcap_counts(path: Path) -> dict[str, int]:
    """Messages per channel topic, from the file's summary statistics."""
    with path.open("rb") as stream:
        summary = make_reader(stream).get_summary()
    assert summary is not None
    assert summary.statistics is not None
    return {summary.channels[i].topic: n for i, n in summary.statistics.channel_message_counts.items()}


def rrd_rows(path: Path) -> dict[str, int]:
    """Rows logged per entity on a timeline, from rerun-sdk's RRD reader."""
    from rerun.chunk import RrdReader

    rows: dict[str, int] = {}
    for chunk in RrdReader(path).stream().to_chunks():
        if not chunk.is_static:
            rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
    return rows
