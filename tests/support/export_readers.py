"""A session's exports read back by independent readers (pyarrow and PyAV for LeRobot, mcap, rerun-sdk),
and the embedded stack they are made on (the echo workload on the session kinds, the real export job)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from mcap.reader import make_reader

from services.cli.dev import DevStack
from tests.e2e.support import SessionStack, auth

ROUTES = """
profiles:
  dev:
    splat: &echo
      backend: local
      local: bench.harness.session_echo:run
      function: splat
      timeout_s: 120
      retries: {max_attempts: 1}
      concurrency: 2
    vlm: *echo
    session_export:
      backend: local
      local: modal_workers.recordings:run
      function: session_export
      gpus: []
      timeout_s: 120
      retries: {max_attempts: 1}
      concurrency: 2
  prod: {}
"""
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
    """The embedded stack with :data:`ROUTES`, every snapshot kept (the echo's are tiny)."""
    table = tmp_path / "routes.yaml"
    table.write_text(ROUTES)
    monkeypatch.setenv("GPURELAY_ROUTE_TABLE", str(table))
    monkeypatch.setenv("GPURELAY_RECORDING_SNAPSHOT_EVERY_S", "0")
    dev = DevStack(data_dir=tmp_path / "data", port=0)
    try:
        env = await dev.start()
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], headers=auth(env), timeout=30) as api:
            yield env, api
    finally:
        await dev.stop()
