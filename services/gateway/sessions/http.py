"""The HTTP pieces the session routes share: the intake, frames read from a request, the PLY response."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request, Response, WebSocket
from fastapi.responses import StreamingResponse

from contracts.base import load_json
from contracts.ids import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from contracts.job_record import JobRecord
from contracts.record_repair import UnreadableRecordError
from contracts.session_feed import IMAGE_TYPES
from services.common.auth.apikeys import Principal
from services.common.auth.scoped import kind_refusal
from services.common.http.problem import ProblemError, field_error, unprocessable
from services.common.storage import ObjectNotFoundError
from services.gateway.sessions.intake import SessionIntake
from services.gateway.state import GatewayState
from services.gateway.ws_auth import (
    WS_FORBIDDEN,
    WS_INVALID_RECORD,
    WS_NOT_FOUND,
    WS_POLICY,
    NoCredentialInTimeError,
    ws_credential,
)

PrincipalOf = Callable[[str | None], Awaitable[Principal | None]]
"""A credential's principal, or ``None`` once it has closed the socket saying why."""


def intake_of(request: Request) -> SessionIntake:
    """The app's :class:`SessionIntake` (built in the app's lifespan)."""
    intake: SessionIntake = request.app.state.session_intake
    return intake


async def read_frame(request: Request, state: GatewayState) -> tuple[bytes, str]:
    """The frame of a request: a raw ``image/jpeg`` / ``image/png`` body or a multipart field ``file``,
    at most ``session_frame_max_bytes`` (413), its bytes an image of that type (422)."""
    limit = state.settings.session_frame_max_bytes
    declared = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if declared == "multipart/form-data":
        async with request.form(max_files=1, max_fields=4, max_part_size=limit) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                missing = field_error(("body", "file"), "missing")
                raise unprocessable("Send the frame as the multipart field 'file'.", missing)
            data = await upload.read(limit + 1)
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ProblemError(413, f"A frame may not exceed {limit} bytes.")
            chunks.append(chunk)
        data = b"".join(chunks)
    if len(data) > limit:
        raise ProblemError(413, f"A frame may not exceed {limit} bytes.")
    return data, image_type(data)


def image_type(data: bytes) -> str:
    """``image/jpeg`` or ``image/png`` by the frame's magic bytes; 422 for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return IMAGE_TYPES[0]
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return IMAGE_TYPES[1]
    raise unprocessable("The frame is not a JPEG or PNG image.", field_error(("body",), "not a JPEG or PNG image"))


def pose_header(value: str | None) -> list[float] | None:
    """The optional ``Gpurelay-Pose`` header: 16 finite numbers (a row-major 4x4 camera→world pose)."""
    if value is None:
        return None
    try:
        pose = load_json(value)
        valid = isinstance(pose, list) and len(pose) == 16 and all(isinstance(v, int | float) for v in pose)
    except ValueError:
        valid = False
    if not valid or any(abs(float(v)) > 1e6 for v in pose):
        bad = field_error(("header", "Gpurelay-Pose"), "not 16 numbers")
        raise unprocessable("Gpurelay-Pose must be a JSON list of 16 numbers.", bad)
    return [float(v) for v in pose]


def frame_key(value: str | None) -> str | None:
    """The optional ``Idempotency-Key`` of a frame (:data:`~contracts.ids.IDEMPOTENCY_KEY_PATTERN`, else 422)."""
    if value is None or IDEMPOTENCY_KEY_PATTERN.fullmatch(value):
        return value
    bad = field_error(("header", "Idempotency-Key"), f"not 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters")
    raise unprocessable(f"The Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters.", bad)


async def snapshot_response(state: GatewayState, record: JobRecord, if_none_match: str | None) -> Response:
    """The snapshot of ``record`` streamed from storage (``ETag``, ``If-None-Match``), or a problem."""
    snapshot = record.session.snapshot if record.session is not None else None
    if snapshot is None:
        raise ProblemError(404, "The session has no snapshot yet.")
    if snapshot.expired:
        raise ProblemError(410, "The session's results have expired.")
    etag = f'"{snapshot.sha256 or snapshot.key}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    chunks = state.storage.open_read(snapshot.key)
    try:
        first = await anext(chunks, b"")
    except ObjectNotFoundError:
        raise ProblemError(404, "The snapshot was replaced by a newer one; ask again.") from None

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    headers["Content-Length"] = str(snapshot.size)
    return StreamingResponse(body(), media_type=snapshot.content_type, headers=headers)


async def socket_session(
    ws: WebSocket, intake: SessionIntake, session_id: str, principal_of: PrincipalOf
) -> JobRecord | None:
    """Accept a session's socket, authenticate it and read the session's record (afresh).

    The credential must come within ``robot_ws_auth_timeout_s`` (else 1008); ``principal_of`` decides
    what it may be. ``None`` once the socket is closed with why (a session of another tenant or subject,
    or none: 4404; of a kind the token leaves out: 4403; a record that does not validate: 4409).
    """
    await ws.accept()
    timeout_s = intake.settings.robot_ws_auth_timeout_s
    try:
        credential = await ws_credential(ws, timeout_s)
    except NoCredentialInTimeError:
        await ws.close(WS_POLICY, f"No auth message within {timeout_s:g} s.")
        return None
    principal = await principal_of(credential)
    if principal is None:
        return None
    try:
        record = await intake.record(principal.tenant, session_id, fresh=True)
    except ProblemError:
        await ws.close(WS_NOT_FOUND, "No such session.")
        return None
    except UnreadableRecordError:
        await ws.close(WS_INVALID_RECORD, "The session's stored record is not valid.")
        return None
    if not principal.sees(record.subject):
        await ws.close(WS_NOT_FOUND, "No such session.")
        return None
    if kind_refusal(principal, record.kind) is not None:
        await ws.close(WS_FORBIDDEN, "The token leaves this session's kind out.")
        return None
    return record
