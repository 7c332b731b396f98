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
    """The exported file and how to store it."""

    path: Path
    name: str
    content_type: str


def export_recording(recording: Recording, params: SessionExportParams, workdir: Path) -> ExportFile:
    """Write ``recording`` in ``params.format`` under ``workdir`` (a scratch folder the caller removes)."""
    stem = recording.manifest.session_id
    if params.format == "mcap":
        return ExportFile(write_mcap(recording, workdir / f"{stem}.mcap"), f"{stem}.mcap", "application/x-mcap")
    if params.format == "rrd":
        return ExportFile(write_rrd(recording, workdir / f"{stem}.rrd"), f"{stem}.rrd", "application/octet-stream")
    if params.task is not None:
        recording = replace(recording, manifest=recording.manifest.model_copy(update={"task": params.task}))
    options = LeRobotOptions(fps=params.fps, split_on_reset=params.split_on_reset, codecs=CODECS[params.video_codec])
    folder = workdir / stem
    write_lerobot(folder, [recording], options)
    archive = zip_folder(folder, workdir / f"{stem}.lerobot.zip")
    shutil.rmtree(folder)
    return ExportFile(archive, archive.name, "application/zip")
