"""The local storage backend's signed blob routes: ``PUT`` and ``GET /v1/blobs/{key}``.

Both need a URL signed by :class:`~services.common.storage.LocalStorage`. A PUT streams the body to
a temporary file (never all in memory), refuses another Content-Type than the signed one and more
bytes than the signed maximum, and leaves no object behind when refused. A PUT to a sealed object
(its upload completed, :mod:`~services.common.storage.seals`) is refused with 409 before its body
is read, and again at the rename should the seal come while the body streams. Errors are
``application/problem+json`` (RFC 9457).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.common.http.problem import problem, problem_responses
from services.common.storage import (
    DEFAULT_CHUNK_SIZE,
    InvalidKeyError,
    KeyConflictError,
    LocalStorage,
    ObjectNotFoundError,
    ObjectSealedError,
    ObjectTooLargeError,
    SignatureError,
    SignatureExpiredError,
    content_disposition,
    is_sealed,
    validate_key,
)
from services.common.storage.signing import Grant, Op
from services.gateway.headers import byte_range, decimal


def _authorize(storage: LocalStorage, op: Op, key: str, request: Request) -> Grant | JSONResponse:
    try:
        validate_key(key)
        storage.files.object_path(key)
    except InvalidKeyError as exc:
        return problem(400, str(exc), title="Invalid key")
    try:
        return storage.verify(op, key, request.query_params)
    except SignatureExpiredError:
        return problem(403, "The signed URL has expired.", title="Signature expired")
    except SignatureError:
        return problem(403, "The URL signature is invalid for this request.", title="Invalid signature")


async def _stream_file(handle: BinaryIO, start: int, length: int) -> AsyncIterator[bytes]:
    try:
        await asyncio.to_thread(handle.seek, start)
        while length > 0 and (chunk := await asyncio.to_thread(handle.read, min(length, DEFAULT_CHUNK_SIZE))):
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()


def _sealed() -> JSONResponse:
    return problem(409, "The upload is completed: its object can no longer be replaced.", title="Upload completed")


def blob_router(storage: LocalStorage) -> APIRouter:
    """The signed blob routes serving ``storage``."""
    router = APIRouter(tags=["blobs"])

    @router.put(
        "/v1/blobs/{key:path}",
        status_code=201,
        response_model=None,
        responses=problem_responses(400, 403, 409, 413, 503, 507),
    )
    async def put_blob(key: str, request: Request) -> Response:
        grant = _authorize(storage, "put", key, request)
        if isinstance(grant, Response):
            return grant
        content_type = request.headers.get("content-type", "")
        if grant.content_type is None or content_type != grant.content_type:
            return problem(
                403,
                f"Content-Type must be {grant.content_type!r} as signed, got {content_type!r}.",
                title="Content-Type mismatch",
            )
        declared = decimal(request.headers.get("content-length"))
        if grant.max_size is not None and declared is not None and declared > grant.max_size:
            return problem(413, f"The body may not exceed {grant.max_size} bytes.")
        if await is_sealed(storage, key):
            return _sealed()
        try:
            info = await storage.write(key, request.stream(), content_type, max_size=grant.max_size)
        except ObjectTooLargeError:
            return problem(413, f"The body may not exceed {grant.max_size} bytes.")
        except ObjectSealedError:
            return _sealed()
        except KeyConflictError as exc:
            return problem(409, str(exc), title="Key conflict")
        return Response(status_code=201, headers={"ETag": f'"{info.etag}"'})

    @router.get("/v1/blobs/{key:path}", response_model=None, responses=problem_responses(400, 403, 404, 416))
    async def get_blob(key: str, request: Request) -> Response:
        grant = _authorize(storage, "get", key, request)
        if isinstance(grant, Response):
            return grant
        try:
            handle, info = await storage.open_file(key)
        except ObjectNotFoundError:
            return problem(404, "No such object.")
        headers = {
            # Set verbatim: media_type= would append a charset to text/* types.
            "Content-Type": info.content_type or "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{info.etag}"',
        }
        if grant.filename is not None:
            headers["Content-Disposition"] = content_disposition(grant.filename)
        wanted = byte_range(request.headers.get("range"), info.size)
        if wanted is False:
            handle.close()
            return problem(416, f"The object has {info.size} bytes.", headers={"Content-Range": f"bytes */{info.size}"})
        start, end = wanted or (0, info.size - 1)
        headers["Content-Length"] = str(end - start + 1)
        if wanted:
            headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        body = _stream_file(handle, start, end - start + 1)
        return StreamingResponse(body, status_code=206 if wanted else 200, headers=headers)

    return router
