"""An upload's bytes checked against its declaration, and its seal kept right under concurrent completes.

:func:`verify` seals the stored object (:mod:`~services.common.storage.seals`) and checks it: its size
is the declared one and its magic bytes fit the declared type, read pinned to the sealed ETag, and its
SHA-256 when small enough. A refused object is unsealed, so the client may send it again.

Two completes of one upload may run at once (retries, two gateway replicas) while its bytes change
(on S3 a pre-signed PUT cannot be revoked): one may refuse bytes another then accepts. Each seals
the object as it found it, and the refusing one unseals it, so without care the completed upload is
left sealed to bytes no one verified, or not sealed at all (its bytes then replaceable, and
``check_sealed`` passing them). So the completed record keeps the verified ETag (``etag``), and every
complete that sealed ends with :func:`keep_seal`: the upload's seal put back from its completed record.
The winner does so after its compare-and-set, and the others after their last seal write, on the record
read then. So the last write to the seal is always one of these, from the completed record.
"""

from __future__ import annotations

import asyncio
import hashlib

from contracts.api.uploads import UploadRecord, UploadStatus
from services.common.http.problem import ProblemError, field_error, unprocessable
from services.common.storage import ObjectChangedError, ObjectInfo, ObjectNotFoundError, put_seal, seal, unseal
from services.gateway.state import GatewayState
from services.gateway.uploads import magic


async def verify(state: GatewayState, record: UploadRecord) -> tuple[ObjectInfo, str | None]:
    """Seal the stored object and check it against the declaration: what was sealed, and its SHA-256
    when small enough. A refused object (a 409 or 422) is unsealed first."""
    try:
        info = await seal(state.storage, record.key)
    except ObjectNotFoundError:
        raise ProblemError(
            409, "No bytes have been uploaded yet: PUT the file to the pre-signed URL, then complete."
        ) from None
    try:
        return info, await _check(state, record, info)
    except ObjectChangedError:
        await unseal(state.storage, record.key)
        raise ProblemError(409, "The file changed while it was being verified; complete again.") from None
    except ProblemError:
        await unseal(state.storage, record.key)
        raise


async def keep_seal(state: GatewayState, record: UploadRecord | None) -> None:
    """Seal a completed upload's object as its record says it was verified; nothing for a pending one
    (or one completed before records kept the ETag)."""
    if record is not None and record.status is UploadStatus.COMPLETED and record.etag is not None:
        await put_seal(state.storage, record.key, record.size, record.etag)


async def _check(state: GatewayState, record: UploadRecord, info: ObjectInfo) -> str | None:
    """Size and magic bytes of the object ``info`` describes (reads pinned to its ETag); its SHA-256."""
    if info.size != record.size:
        raise unprocessable(
            "The stored object does not have the declared size.",
            field_error(("size",), f"declared {record.size} bytes, storage holds {info.size}"),
        )
    head = await state.storage.read_range(record.key, 0, magic.HEAD_BYTES, if_match=info.etag)
    if not magic.matches(record.content_type, head):
        seen = magic.sniff(head) or "an unrecognised format"
        raise unprocessable(
            "The file's content does not match its declared type.",
            field_error(("content_type",), f"declared {record.content_type}, the bytes look like {seen}"),
        )
    if info.size > state.settings.upload_sha256_max_bytes:
        return None
    return await _sha256(state, record.key, info.etag)


async def _sha256(state: GatewayState, key: str, etag: str) -> str:
    digest = hashlib.sha256()
    async for chunk in state.storage.open_read(key, if_match=etag):
        await asyncio.to_thread(digest.update, chunk)
    return digest.hexdigest()
