"""Seals: what an object was when its upload completed, so a later change is refused or caught.

A pre-signed PUT stays valid until it expires, also after the upload was verified and completed.
:func:`seal` records the object's size and ETag beside it, in an object no URL is ever signed for
(:func:`seal_key`: ``a/b/upl_1/f.mp4`` is sealed in ``a/b/upl_1.seals/f.mp4.json``, outside the
upload's own prefix ``a/b/upl_1/``, so listing an upload still finds its one object). Then:

- the local backend refuses any write to a sealed key (:class:`ObjectSealedError`, checked under
  the same lock as the rename that would replace the object): the gateway's blob PUT answers 409;
- on S3 a URL cannot be revoked (it is short-lived instead), so a user of the object calls
  :func:`check_sealed`, which raises :class:`ObjectChangedError` when the object is no longer the
  sealed one, and reads it pinned to the sealed ETag (``open_read(key, if_match=etag)``), so a
  change during the read is refused too.

An object that was never sealed (uploaded before seals existed) checks out as it is.
"""

from __future__ import annotations

import json

from services.common.storage.base import ObjectInfo, Storage
from services.common.storage.errors import InvalidKeyError, ObjectChangedError, ObjectNotFoundError
from services.common.storage.keys import validate_key

SEALS_SUFFIX = ".seals"


def seal_key(key: str) -> str:
    """Where the seal of ``key`` is kept: ``{folder}.seals/{name}.json``, beside the object's folder.

    :class:`~services.common.storage.errors.InvalidKeyError` when that key would be too long (such
    an object cannot be sealed).
    """
    folder, slash, name = validate_key(key).rpartition("/")
    return validate_key(f"{folder}{SEALS_SUFFIX}/{name}.json" if slash else f"{SEALS_SUFFIX}/{name}.json")


def seal_key_of(key: str) -> str | None:
    """The key of ``key``'s seal; ``None`` for a seal itself, or an object too long a key to have one."""
    if key.rpartition("/")[0].endswith(SEALS_SUFFIX):
        return None
    try:
        return seal_key(key)
    except InvalidKeyError:
        return None


async def seal(storage: Storage, key: str) -> ObjectInfo:
    """Record the object as it is now; its info. :class:`ObjectNotFoundError` when there is none."""
    info = await storage.head(key)
    if info is None:
        raise ObjectNotFoundError(key)
    await put_seal(storage, key, info.size, info.etag)
    return info


async def put_seal(storage: Storage, key: str, size: int, etag: str) -> None:
    """Seal ``key`` as the object of ``size`` bytes and ``etag`` (what :func:`seal` found, or put back
    from a completed upload's record over a concurrent complete's seal or unseal)."""
    record = json.dumps({"size": size, "etag": etag}).encode()
    await storage.put(seal_key(key), record, "application/json")


async def unseal(storage: Storage, key: str) -> None:
    """Forget the seal of ``key`` (an upload whose bytes failed verification may be sent again)."""
    await storage.delete(seal_key(key))


async def is_sealed(storage: Storage, key: str) -> bool:
    """Whether ``key`` has a seal."""
    return await storage.head(seal_key(key)) is not None


async def check_sealed(storage: Storage, key: str) -> ObjectInfo:
    """The object's info when it is still the sealed one (or was never sealed).

    :class:`ObjectChangedError` when its size or ETag differ from the seal; :class:`ObjectNotFoundError`
    when it is gone.
    """
    info = await storage.head(key)
    if info is None:
        raise ObjectNotFoundError(key)
    try:
        record = json.loads(await storage.read_all(seal_key(key)))
    except ObjectNotFoundError:
        return info
    except ValueError:
        record = None
    if not isinstance(record, dict) or (record.get("size"), record.get("etag")) != (info.size, info.etag):
        raise ObjectChangedError(key)
    return info
