"""Object storage: one async interface, an ``s3`` and a ``local`` backend.

``make_storage(settings)`` picks the backend named by ``settings.storage_backend``; keys are built
with :func:`upload_key` and :func:`result_key` (with ``settings.storage_prefix``); :func:`check_result_key`
is the one check that a key lies under its job's results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.common.config import BaseServiceSettings
from services.common.storage.base import (
    DEFAULT_CHUNK_SIZE,
    ObjectInfo,
    PresignedRequest,
    PutData,
    Storage,
)
from services.common.storage.errors import (
    InvalidKeyError,
    KeyConflictError,
    ObjectChangedError,
    ObjectNotFoundError,
    ObjectSealedError,
    ObjectTooLargeError,
    StorageError,
    StorageFullError,
)
from services.common.storage.keys import (
    check_result_key,
    content_disposition,
    result_key,
    results_prefix,
    sanitize_filename,
    upload_key,
    validate_key,
    validate_prefix,
)
from services.common.storage.local import LocalStorage
from services.common.storage.seals import check_sealed, is_sealed, put_seal, seal, seal_key, unseal
from services.common.storage.signing import (
    SignatureError,
    SignatureExpiredError,
    SignatureInvalidError,
)

if TYPE_CHECKING:
    from services.common.storage.s3 import S3Storage
else:

    def __getattr__(name: str) -> Any:
        """``S3Storage`` on first use: aioboto3 and botocore (about 17 MB a process) load only where S3 is
        the backend, not in ``gpurelay dev``'s processes and local pool, which keep files on disk."""
        if name == "S3Storage":
            from services.common.storage.s3 import S3Storage

            return S3Storage
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "InvalidKeyError",
    "KeyConflictError",
    "LocalStorage",
    "ObjectChangedError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectSealedError",
    "ObjectTooLargeError",
    "PresignedRequest",
    "PutData",
    "S3Storage",
    "SignatureError",
    "SignatureExpiredError",
    "SignatureInvalidError",
    "Storage",
    "StorageError",
    "StorageFullError",
    "check_result_key",
    "check_sealed",
    "content_disposition",
    "is_sealed",
    "make_storage",
    "put_seal",
    "result_key",
    "results_prefix",
    "sanitize_filename",
    "seal",
    "seal_key",
    "unseal",
    "upload_key",
    "validate_key",
    "validate_prefix",
]


def make_storage(settings: BaseServiceSettings) -> Storage:
    """The backend named by ``settings.storage_backend``."""
    if settings.storage_backend == "s3":
        from services.common.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    return LocalStorage.from_settings(settings)
