"""The S3 backend (aioboto3): AWS S3, Backblaze B2, Cloudflare R2, MinIO.

Its clients, how botocore's errors read and the bucket's creation live in
:mod:`~services.common.storage.s3_clients`; its uploads in :mod:`~services.common.storage.s3_uploads`.
The bucket is only created by an explicit :meth:`S3Storage.ensure_bucket`.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aioboto3
from botocore.exceptions import ClientError

from services.common.config import BaseServiceSettings
from services.common.storage.base import (
    DEFAULT_CHUNK_SIZE,
    ObjectInfo,
    PresignedRequest,
    PutData,
    Storage,
    validate_content_type,
    validate_expires,
)
from services.common.storage.errors import InvalidKeyError, ObjectChangedError, ObjectNotFoundError, StorageError
from services.common.storage.keys import content_disposition, validate_key, validate_prefix
from services.common.storage.s3_clients import S3Clients, create_bucket, error_code, storage_errors
from services.common.storage.s3_uploads import MIN_PART_SIZE, upload
from services.common.storage.seals import seal_key_of

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import ObjectIdentifierTypeDef


def _etag(raw: str | None) -> str:
    return (raw or "").strip('"')


def _get_params(bucket: str, key: str, if_match: str | None) -> dict[str, Any]:
    """GetObject's parameters, with If-Match (a quoted ETag) when ``if_match`` is given."""
    params: dict[str, Any] = {"Bucket": bucket, "Key": validate_key(key)}
    if if_match is not None:
        params["IfMatch"] = f'"{if_match}"'
    return params


class S3Storage(Storage):
    """Objects in one S3 bucket.

    Without keys the default AWS credential chain applies. URLs are signed for
    ``public_endpoint_url`` when the clients reach the store elsewhere than this service does.
    ``part_size`` is the multipart chunk (at least 5 MiB); ``session`` lets several stores share
    one aioboto3 session and the service models it has parsed (see :class:`S3Clients`).
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        default_ttl_s: int = 3600,
        part_size: int = 8 * 1024 * 1024,
        session: aioboto3.Session | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.public_endpoint_url = public_endpoint_url or endpoint_url
        self.region = region
        self.default_ttl_s = validate_expires(default_ttl_s)
        self.part_size = part_size
        self._clients = S3Clients(
            region, access_key_id, secret_access_key, path_style=bool(endpoint_url), session=session
        )

    @classmethod
    def from_settings(cls, settings: BaseServiceSettings) -> S3Storage:
        """A backend for ``settings.storage_bucket`` with the ``s3_*`` settings."""
        key_id, secret = settings.s3_access_key_id, settings.s3_secret_access_key
        return cls(
            settings.storage_bucket,
            endpoint_url=settings.s3_endpoint_url,
            # Optional setting: the endpoint clients reach when it differs (e.g. http://minio:9000).
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            access_key_id=key_id.get_secret_value() if key_id else None,
            secret_access_key=secret.get_secret_value() if secret else None,
            default_ttl_s=settings.signed_url_ttl_s,
        )

    async def client(self, endpoint_url: str | None = None) -> S3Client:
        """The shared client (for ``endpoint_url``, default the configured one), opened on first use."""
        return await self._clients.get(endpoint_url or self.endpoint_url)

    async def _presigner(self) -> S3Client:
        return await self.client(self.public_endpoint_url)

    async def aclose(self) -> None:
        """Close the clients."""
        await self._clients.aclose()

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists."""
        await create_bucket(await self.client(), self.bucket, self.region)

    async def ping(self) -> None:
        """Check that the bucket is reachable with these credentials."""
        with storage_errors(f"HEAD bucket {self.bucket!r}"):
            await (await self.client()).head_bucket(Bucket=self.bucket)

    def _ttl(self, expires_s: int | None) -> int:
        return validate_expires(self.default_ttl_s if expires_s is None else expires_s)

    async def presign_put(
        self, key: str, content_type: str, max_size: int, expires_s: int | None = None
    ) -> PresignedRequest:
        """A SigV4 PUT signing Content-Type and Content-Length: the body must be exactly ``max_size``."""
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        ttl = self._ttl(expires_s)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key)}
        params |= {"ContentType": validate_content_type(content_type), "ContentLength": max_size}
        url = await (await self._presigner()).generate_presigned_url("put_object", Params=params, ExpiresIn=ttl)
        headers = {"Content-Type": content_type, "Content-Length": str(max_size)}
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
        return PresignedRequest(method="PUT", url=url, headers=headers, expires_at=expires_at)

    async def presign_get(self, key: str, expires_s: int | None = None, filename: str | None = None) -> str:
        """A SigV4 GET URL, optionally forcing an attachment file name."""
        params = {"Bucket": self.bucket, "Key": validate_key(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename)
        s3 = await self._presigner()
        return await s3.generate_presigned_url("get_object", Params=params, ExpiresIn=self._ttl(expires_s))

    async def head(self, key: str) -> ObjectInfo | None:
        """HEAD the object; ``None`` when missing."""
        try:
            with storage_errors(f"HEAD {key!r}", key):
                resp = await (await self.client()).head_object(Bucket=self.bucket, Key=validate_key(key))
        except ObjectNotFoundError:
            return None
        return ObjectInfo(
            key=key,
            size=resp["ContentLength"],
            content_type=resp.get("ContentType"),
            etag=_etag(resp.get("ETag")),
            last_modified=resp["LastModified"],
        )

    async def open_read(
        self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        """Stream the body in chunks of at most ``chunk_size`` bytes (``if_match``: S3's If-Match)."""
        with storage_errors(f"GET {key!r}", key):
            s3, params = await self.client(), _get_params(self.bucket, key, if_match)
            resp = await s3.get_object(**params)
            body = resp["Body"]
            async with body:  # releases the connection, also on early exit
                async for chunk in body.iter_chunks(chunk_size):
                    yield chunk

    async def read_range(self, key: str, start: int, length: int, *, if_match: str | None = None) -> bytes:
        """A ranged GET; empty when ``start`` is past the end (``if_match``: S3's If-Match)."""
        if start < 0 or length < 0:
            raise ValueError("start and length must be >= 0")
        if length == 0:
            if if_match is not None and (info := await self.head(key)) is not None and info.etag != if_match:
                raise ObjectChangedError(key)
            return b""
        s3, params = await self.client(), _get_params(self.bucket, key, if_match)
        try:
            with storage_errors(f"GET {key!r}", key):
                resp = await s3.get_object(**params, Range=f"bytes={start}-{start + length - 1}")
                body = resp["Body"]
                async with body:
                    data: bytes = await body.read()
        except StorageError as exc:
            if isinstance(exc.__cause__, ClientError) and error_code(exc.__cause__) == "InvalidRange":
                return b""
            raise
        return data[:length]

    async def put(self, key: str, data: PutData, content_type: str) -> ObjectInfo:
        """Upload in one request, or as a multipart upload once a stream or file exceeds one part."""
        validate_key(key)
        validate_content_type(content_type)
        s3 = await self.client()
        with storage_errors(f"PUT {key!r}"):
            await upload(s3, self.bucket, key, data, content_type, part_size=self.part_size)
        info = await self.head(key)
        if info is None:
            raise StorageError(f"object missing right after upload: {key}")
        return info

    async def delete(self, key: str) -> None:
        """Delete the object (no error when missing) and its seal, if any."""
        with storage_errors(f"DELETE {key!r}"):
            await (await self.client()).delete_object(Bucket=self.bucket, Key=validate_key(key))
            if (seal := seal_key_of(key)) is not None:
                await (await self.client()).delete_object(Bucket=self.bucket, Key=seal)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """ListObjectsV2 pages; listings carry no content type."""
        paginator = (await self.client()).get_paginator("list_objects_v2")
        with storage_errors(f"LIST {prefix!r}"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=validate_prefix(prefix)):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"],
                        size=item["Size"],
                        content_type=None,
                        etag=_etag(item.get("ETag")),
                        last_modified=item["LastModified"],
                    )

    async def delete_prefix(self, prefix: str) -> int:
        """Delete everything under a non-empty ``prefix``, 1000 keys per request."""
        if not validate_prefix(prefix):
            raise InvalidKeyError("refusing to delete with an empty prefix")
        s3, count = await self.client(), 0
        keys = [info.key async for info in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            batch: builtins.list[ObjectIdentifierTypeDef] = [{"Key": k} for k in keys[start : start + 1000]]
            with storage_errors(f"DELETE under {prefix!r}"):
                resp = await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if errors := resp.get("Errors"):
                raise StorageError(f"could not delete {len(errors)} objects, e.g. {errors[0]}")
            count += len(batch)
        return count
