"""The S3 backend's clients, botocore's errors read as the storage's, and the creation of a bucket.

Signature v4 always; path-style addressing whenever the backend has an endpoint URL (MinIO, B2, R2
and test servers rarely resolve virtual-host bucket names). One client per endpoint (the configured
one, and the public one URLs are signed for) is opened on first use and kept until
:meth:`S3Clients.aclose`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from services.common.storage.errors import ObjectChangedError, ObjectNotFoundError, StorageError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def error_code(exc: ClientError) -> str:
    """The S3 error code ``exc`` carries (``""`` when none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def storage_errors(what: str, key: str | None = None) -> Iterator[None]:
    """Map botocore errors to :class:`ObjectNotFoundError` (with ``key``) or :class:`StorageError`."""
    try:
        yield
    except ClientError as exc:
        if key is not None and error_code(exc) in _MISSING:
            raise ObjectNotFoundError(key) from exc
        if key is not None and error_code(exc) in ("PreconditionFailed", "412"):
            raise ObjectChangedError(key) from exc
        raise StorageError(f"{what} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{what} failed: {exc}") from exc


class S3Clients:
    """S3 clients for one region and one set of credentials, one per endpoint URL.

    Without keys the default AWS credential chain applies. ``path_style`` addresses the bucket in the
    path; a shared ``session`` parses the service models once for every store that uses it.
    """

    def __init__(
        self,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        *,
        path_style: bool,
        session: aioboto3.Session | None = None,
    ) -> None:
        self._session = session or aioboto3.Session()
        self._region = region
        self._key_id, self._secret = access_key_id, secret_access_key
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
            # Default CRC checksums (botocore >= 1.36) break many S3-compatible services.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str | None, S3Client] = {}
        self._lock = asyncio.Lock()

    async def get(self, endpoint_url: str | None) -> S3Client:
        """The client for ``endpoint_url`` (``None``: AWS's own), opened on first use."""
        async with self._lock:
            if endpoint_url not in self._clients:
                factory = self._session.client(
                    "s3",
                    endpoint_url=endpoint_url,
                    region_name=self._region,
                    aws_access_key_id=self._key_id,
                    aws_secret_access_key=self._secret,
                    config=self._config,
                )
                self._clients[endpoint_url] = await self._stack.enter_async_context(factory)
            return self._clients[endpoint_url]

    async def aclose(self) -> None:
        """Close the clients."""
        self._clients.clear()
        await self._stack.aclose()


async def create_bucket(s3: S3Client, bucket: str, region: str) -> None:
    """Create ``bucket`` in ``region``; one that exists already is no error."""
    try:
        await s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if error_code(exc) not in _MISSING:
            raise StorageError(f"cannot check bucket {bucket!r}: {exc}") from exc
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        await s3.create_bucket(**kwargs)
    except ClientError as exc:
        if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise StorageError(f"cannot create bucket {bucket!r}: {exc}") from exc
