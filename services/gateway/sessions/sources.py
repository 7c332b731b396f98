"""What a recording or a source named in a request must be: checked before the job or session is recorded.

* ``session_export``'s ``params.session_id``, a session's ``source.session_id``: a session of this
  tenant with a recording whose retention has not removed it; a source's must also have ended (its
  recording is then complete).
* a session's ``source.upload_id``: an upload of this tenant (a pending one makes the session wait
  for it, as a job's input does) that, once completed, is a zip.

Each problem is a 422 naming the field, as a job's inputs' are.
"""

from __future__ import annotations

from typing import Any

from nats.js.errors import KeyNotFoundError

from contracts.api.uploads import UploadStatus
from contracts.ids import ID_PATTERN, tenant_key
from contracts.job_record import JobRecord
from contracts.record_repair import UnreadableRecordError, read_record
from contracts.recordings.layout import HEAD_NAME
from contracts.specs.jobs import SessionExportSpec
from contracts.specs.session_source import DatasetSource, RecordingSource
from services.common.auth.apikeys import Principal
from services.common.http.problem import field_error, unprocessable
from services.common.storage import result_key
from services.gateway.state import GatewayState
from services.gateway.uploads.inputs import upload_input_problem, upload_record

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


async def session_record(state: GatewayState, owner: Principal, session_id: str) -> JobRecord | None:
    """``owner``'s session ``session_id`` (``None``: no such session, or not one ``owner`` can see: another
    tenant's, or a subject's token asking for another subject's)."""
    tenant = owner.tenant
    if not ID_PATTERN.fullmatch(session_id):
        return None
    try:
        entry = await state.kv.jobs.get(tenant_key(tenant, session_id))
        record = read_record(entry.value) if entry.value else None
    except (KeyNotFoundError, UnreadableRecordError):
        return None
    visible = record is not None and record.session is not None and owner.sees(record.subject)
    return record if visible else None


async def recording_problem(state: GatewayState, record: JobRecord | None, name: str, *, ended: bool) -> str | None:
    """Why the session ``record`` (named ``name``) has no recording to read, if it has none."""
    if record is None or record.session is None:
        return f"no session {name!r}"
    if ended and not record.terminal:
        return f"session {name!r} has not ended (it is {record.session_state}); replay it once it has"
    if record.session.recording_expired:
        return f"the recording of session {name!r} has expired"
    head = result_key(state.settings.storage_prefix, record.tenant, record.id, HEAD_NAME)
    if await state.storage.head(head) is None:
        return f"session {name!r} has no recording"
    return None


async def _zip_problem(state: GatewayState, owner: Principal, upload_id: str) -> str | None:
    tenant = owner.tenant
    problem = await upload_input_problem(state, owner, upload_id)
    if problem is not None:
        return problem
    upload = await upload_record(state, tenant, upload_id)
    if upload is None or upload.status is not UploadStatus.COMPLETED:
        return None  # the session waits for it, as a job waits for its inputs
    if not (await state.storage.read_range(upload.key, 0, 4)).startswith(ZIP_MAGIC):
        return f"upload {upload_id!r} is not a zip (a LeRobotDataset v3 folder, zipped)"
    return None


async def check_recording_refs(state: GatewayState, owner: Principal, spec: Any) -> None:
    """422 naming each recording or source ``spec`` refers to that cannot serve ``owner``'s request."""
    errors = []
    if isinstance(spec, SessionExportSpec):
        sid = spec.params.session_id
        problem = await recording_problem(state, await session_record(state, owner, sid), sid, ended=False)
        if problem is not None:
            errors.append(field_error(("body", "params", "session_id"), problem))
    source = getattr(spec, "source", None)
    if isinstance(source, RecordingSource):
        sid = source.session_id
        problem = await recording_problem(state, await session_record(state, owner, sid), sid, ended=True)
        if problem is not None:
            errors.append(field_error(("body", "source", "session_id"), problem))
    if isinstance(source, DatasetSource) and (problem := await _zip_problem(state, owner, source.upload_id)):
        errors.append(field_error(("body", "source", "upload_id"), problem))
    if errors:
        raise unprocessable("The recording or source the request names cannot serve it.", *errors)
