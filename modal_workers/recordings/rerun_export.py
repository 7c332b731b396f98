"""A recording as a Rerun ``.rrd``, written with rerun-sdk (the optional extra ``rerun``: its wheel is large).

Timelines: ``capture_time`` (a timestamp) on everything, ``seq`` (the frame's number) on frames and
joints. Entities:

- ``camera/<camera>``: ``EncodedImage``, the stored JPEG or PNG as it is, at its capture time;
- ``joints/<joint name>``: ``Scalars``, each sample matched to a frame (radians) at its sample time;
- ``results``: ``TextLog`` (INFO), the result's text (or its data as JSON) at its publish time;
- ``control``: ``TextLog`` (WARN), ``stop`` or ``reset`` and the reason;
- ``snapshots/<name>``: a PLY snapshot (a splat) as ``Points3D`` (positions; colours from the
  Gaussians' DC coefficients, or a PLY's ``red``/``green``/``blue``), other snapshots as a
  ``TextDocument``.

Without the extra, :func:`write_rrd` fails with ``PermanentError("format_unavailable")`` saying how
to install it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from contracts.recordings.manifest import RecordedSnapshot
from modal_workers.recordings.model import Recording
from modal_workers.runtime.worker_runtime import PermanentError

APPLICATION_ID = "gpurelay"
SH_C0 = 0.28209479177387814
"""The degree-0 spherical harmonic: colour = 0.5 + SH_C0 × f_dc."""


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PermanentError(
            "format_unavailable",
            f"the rrd export needs {module}: install gpurelay with its extra, pip install 'gpurelay[rerun]'",
        ) from exc


def write_rrd(recording: Recording, path: Path) -> Path:
    """Write ``recording`` to ``path`` as a Rerun recording (its id: the session's)."""
    rr = _import("rerun")
    m = recording.manifest
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = rr.RecordingStream(APPLICATION_ID, recording_id=m.session_id, send_properties=False)
    rr.set_log_time_enabled(False, recording=stream)  # the export's wall clock says nothing about the session
    rr.set_log_tick_enabled(False, recording=stream)
    stream.save(path)
    for frame in m.frames:
        stream.set_time("capture_time", timestamp=frame.ts)
        stream.set_time("seq", sequence=frame.seq)
        stream.log(
            f"camera/{frame.camera}", rr.EncodedImage(contents=recording.image(frame), media_type=frame.content_type)
        )
    stream.reset_time()
    samples = {f.joints.ts: (f.seq, f.joints.angles) for f in m.frames if f.joints is not None}
    if samples:
        times = sorted(samples)
        angles = np.asarray([samples[t][1] for t in times], dtype=np.float64)
        indexes = [
            rr.TimeColumn("capture_time", timestamp=times),
            rr.TimeColumn("seq", sequence=[samples[t][0] for t in times]),
        ]
        for column, name in enumerate(m.joint_names):
            stream.send_columns(
                f"joints/{name}", indexes=indexes, columns=rr.Scalars.columns(scalars=angles[:, column])
            )
    for result in m.results:
        stream.set_time("capture_time", timestamp=result.ts)
        text = result.text if result.text is not None else json.dumps(result.data)
        stream.log("results", rr.TextLog(f"[{result.first_seq}..{result.last_seq}] {text}", level=rr.TextLogLevel.INFO))
    for control in m.controls:
        stream.set_time("capture_time", timestamp=control.ts)
        text = control.action if not control.reason else f"{control.action}: {control.reason}"
        stream.log("control", rr.TextLog(text, level=rr.TextLogLevel.WARN))
    for snapshot in m.snapshots:
        stream.set_time("capture_time", timestamp=snapshot.ts)
        stream.log(f"snapshots/{snapshot.name.rpartition('.')[0] or snapshot.name}", _snapshot(rr, recording, snapshot))
    stream.flush()
    stream.disconnect()
    return path


def _snapshot(rr: Any, recording: Recording, snapshot: RecordedSnapshot) -> Any:
    data = recording.read(snapshot.key)
    if not snapshot.name.endswith(".ply"):
        return rr.TextDocument(data.decode("utf-8", errors="replace"))
    positions, colors = ply_points(data)
    return rr.Points3D(positions, colors=colors)


def ply_points(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """A PLY's vertex positions (N × 3) and RGB colours (N × 3 ``uint8``) when it has them."""
    plyfile = _import("plyfile")
    try:
        vertex = plyfile.PlyData.read(io.BytesIO(data))["vertex"]
        names = set(vertex.data.dtype.names or ())
        positions = np.stack([np.asarray(vertex[axis], dtype=np.float32) for axis in "xyz"], axis=1)
    except (KeyError, ValueError, plyfile.PlyParseError) as exc:
        raise PermanentError("invalid_ply", f"a snapshot is not a PLY with vertices: {exc}") from exc
    if {"f_dc_0", "f_dc_1", "f_dc_2"} <= names:
        dc = np.stack([np.asarray(vertex[f"f_dc_{i}"], dtype=np.float32) for i in range(3)], axis=1)
        return positions, (np.clip(0.5 + SH_C0 * dc, 0.0, 1.0) * 255).astype(np.uint8)
    if {"red", "green", "blue"} <= names:
        return positions, np.stack([np.asarray(vertex[c], dtype=np.uint8) for c in ("red", "green", "blue")], axis=1)
    return positions, None
