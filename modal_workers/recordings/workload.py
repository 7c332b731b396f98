"""The ``session_export`` job: one session's recording as a LeRobot dataset (zipped), an MCAP or a Rerun file.

It reads the recording of ``params.session_id`` (a session of the job's own tenant: the keys are its
results) through ``ctx.recording``, writes the file in a scratch folder (:func:`export_recording`) and
stores it as the job's artifact. The result: ``{format, file, frames, episodes, frames_left_out}``
(``frames_left_out``: lerobot's frames without a matched joint sample in a recording whose other
frames have one). Errors a user can act on fail the job with a code: ``recording_missing``,
``recording_unreadable`` (an index or a stored copy gone), ``empty_recording``, ``format_unavailable``
(rrd without the extra), ``invalid_ply``.
"""

from __future__ import annotations

from typing import Any

from contracts.specs.jobs import SessionExportSpec
from modal_workers.recordings.export import export_recording
from modal_workers.recordings.model import Recording
from modal_workers.runtime.errors import PermanentError
from services.common.recordings import RecordingUnreadableError
from services.common.storage import ObjectNotFoundError


def run(spec: SessionExportSpec, ctx: Any) -> dict[str, Any]:
    """Export the session's recording; the file is the job's artifact."""
    params = spec.params
    try:
        found = ctx.recording(params.session_id)
    except RecordingUnreadableError as exc:
        raise PermanentError("recording_unreadable", str(exc)) from exc
    if found is None:
        raise PermanentError("recording_missing", f"session {params.session_id} has no recording")
    manifest, read = found
    if not manifest.frames:
        raise PermanentError("empty_recording", f"the recording of session {params.session_id} holds no frame")
    ctx.progress(0.05, f"exporting {len(manifest.frames)} frames as {params.format}")
    try:
        exported = export_recording(Recording(manifest, read), params, ctx.work_dir)
    except ObjectNotFoundError as exc:
        raise PermanentError("recording_unreadable", f"a stored copy the recording names is gone: {exc}") from exc
    except ValueError as exc:
        raise PermanentError("empty_recording", str(exc)) from exc
    ctx.artifact(exported.name, exported.path, exported.content_type)
    return {
        "format": params.format, "file": exported.name, "frames": exported.frames, "episodes": exported.episodes,
        "frames_left_out": exported.frames_left_out, "session_id": params.session_id,
    }  # fmt: skip
