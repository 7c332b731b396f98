"""Uploads to S3: a body in one PutObject, a stream or a file in parts once it outgrows one.

A stream is regrouped into parts of exactly ``part_size`` bytes (S3 wants every part but the last to
hold at least :data:`MIN_PART_SIZE`). Only when a second part follows the first does a multipart
upload begin; any failure aborts it, so a failed upload leaves no parts behind in the bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from services.common.storage.base import PutData, iter_chunks

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

MIN_PART_SIZE = 5 * 1024 * 1024


async def upload(s3: S3Client, bucket: str, key: str, data: PutData, content_type: str, *, part_size: int) -> None:
    """Store ``data`` at ``key``: bytes in one request, a stream or a file in parts of ``part_size``."""
    if isinstance(data, bytes | bytearray | memoryview):
        await s3.put_object(Bucket=bucket, Key=key, Body=bytes(data), ContentType=content_type)
    else:
        pieces = _rechunk(iter_chunks(data, part_size), part_size)
        await _put_stream(s3, bucket, key, pieces, content_type)


async def _rechunk(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """``chunks`` regrouped into pieces of exactly ``size`` bytes, the last one shorter."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


async def _put_stream(s3: S3Client, bucket: str, key: str, pieces: AsyncIterator[bytes], ctype: str) -> None:
    first, second = await anext(pieces, b""), await anext(pieces, None)
    if second is None:
        await s3.put_object(Bucket=bucket, Key=key, Body=first, ContentType=ctype)
        return
    created = await s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType=ctype)
    upload_id = created["UploadId"]
    parts: list[CompletedPartTypeDef] = []
    try:
        for body in (first, second):
            parts.append(await _upload_part(s3, bucket, key, upload_id, len(parts) + 1, body))
        async for body in pieces:
            parts.append(await _upload_part(s3, bucket, key, upload_id, len(parts) + 1, body))
        await s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        with contextlib.suppress(ClientError, BotoCoreError):
            abort = s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            await asyncio.shield(abort)
        raise


async def _upload_part(
    s3: S3Client, bucket: str, key: str, upload_id: str, number: int, body: bytes
) -> CompletedPartTypeDef:
    resp = await s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
    return {"PartNumber": number, "ETag": resp["ETag"]}
