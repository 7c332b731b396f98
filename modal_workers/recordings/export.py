"""A recording as the file a ``session_export`` job stores: a zipped LeRobot dataset, an MCAP or an RRD."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from contracts.specs.job_params import SessionExportParams
from modal_workers.recordings.archive import zip_folder
from modal_workers.recordings.lerobot import LeRobotOptions, write_lerobot
from modal_workers.recordings.mcap_export import write_mcap
from modal_workers.recordings.model import Recording
from modal_workers.recordings.rerun_export import write_rrd

CODECS = {"av1": ("libsvtav1", "libx264"), "h264": ("libx264",)}
"""``video_codec`` → the encoders tried, in order."""


@dataclass(frozen=True)
class ExportFile:
    """The exported file, how to store it, and what it holds."""

    path: Path
    name: str
    content_type: str
    frames: int
    episodes: int = 1
    frames_left_out: int = 0


def export_recording(recording: Recording, params: SessionExportParams, workdir: Path) -> ExportFile:
    """Write ``recording`` in ``params.format`` under ``workdir`` (a scratch folder the caller removes)."""
    stem, frames = recording.manifest.session_id, len(recording.manifest.frames)
    if params.format == "mcap":
        path = write_mcap(recording, workdir / f"{stem}.mcap")
        return ExportFile(path, path.name, "application/x-mcap", frames)
    if params.format == "rrd":
        path = write_rrd(recording, workdir / f"{stem}.rrd")
        return ExportFile(path, path.name, "application/octet-stream", frames)
    if params.task is not None:
        recording = replace(recording, manifest=recording.manifest.model_copy(update={"task": params.task}))
    options = LeRobotOptions(fps=params.fps, split_on_reset=params.split_on_reset, codecs=CODECS[params.video_codec])
    folder = workdir / stem
    summary = write_lerobot(folder, [recording], options)
    archive = zip_folder(folder, workdir / f"{stem}.lerobot.zip")
    shutil.rmtree(folder)
    return ExportFile(
        archive, archive.name, "application/zip", summary.frames, summary.episodes, summary.frames_left_out
    )
