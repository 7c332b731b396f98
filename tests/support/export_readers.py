"""A session's exports read back by independent readers (pyarrow and PyAV for LeRobot, mcap, rerun-sdk),
and the embedded stack they are made on (the echo workload on the session kinds, the real export job)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from mcap.reader import make_reader

from tests.e2e.conftest import LOCAL_ROUTES
from tests.e2e.conftest import _stack as local_stack
from tests.e2e.support import SessionStack

EXPORT_ROUTE = {
    "backend": "local", "local": "modal_workers.recordings:run", "function": "session_export", "gpus": [],
    "timeout_s": 120, "retries": {"max_attempts": 1}, "concurrency": 2,
}  # fmt: skip
"""The real export job, on the local pool."""
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


async def echo_and_export_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SessionStack]:
    """The embedded stack: the echo workload on the session kinds (the e2e local routes), the real export;
    every snapshot kept in recordings (the echo's are tiny)."""
    table = yaml.safe_load(LOCAL_ROUTES)
    table["profiles"]["dev"]["session_export"] = EXPORT_ROUTE
    monkeypatch.setenv("GPURELAY_RECORDING_SNAPSHOT_EVERY_S", "0")
    async for stack in local_stack(tmp_path, monkeypatch, yaml.safe_dump(table)):
        yield stack
