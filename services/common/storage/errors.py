"""The storage's errors: what every backend raises, whatever the store underneath.

They live apart from the interface (:mod:`~services.common.storage.base`) so that the key rules and
the HTTP problem mapping can name them without the rest of the storage.
"""

from __future__ import annotations


class StorageError(Exception):
    """A storage operation failed."""


class InvalidKeyError(StorageError, ValueError):
    """A key or prefix is malformed or would escape the storage root."""


class ObjectNotFoundError(StorageError, KeyError):
    """The object does not exist."""


class ObjectTooLargeError(StorageError):
    """A body is larger than the size the upload was signed for."""


class ObjectChangedError(StorageError):
    """The object is not the version expected (another ETag than sealed or asked for)."""


class ObjectSealedError(StorageError):
    """The object is sealed (its upload completed): it may not be replaced."""


class KeyConflictError(StorageError):
    """The key names a folder of other objects, or a folder of it is an object (S3 allows both, a file tree not)."""


class StorageFullError(StorageError):
    """The storage has no room left for the object (a full disk or quota): nothing was stored."""
