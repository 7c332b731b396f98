"""The runtime's I/O: input downloads and file digests (the event sinks: :mod:`modal_workers.runtime.sinks`).

* :func:`resolve_input` / :func:`download_input` turn ``{"upload_id": ...}`` (the one object under
  ``{prefix}uploads/{tenant}/{upload_id}/``) or ``{"url": "https://..."}`` into a local file,
  bounded in size and time. An upload is read pinned to its seal (``input_changed`` when the file
  was replaced after its upload completed, see :mod:`services.common.storage.seals`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from contracts.specs.job_inputs import InputRef
from services.common.storage import ObjectChangedError, ObjectNotFoundError, Storage, StorageError, check_sealed
from services.common.storage.keys import sanitize_filename

DEFAULT_MAX_INPUT_BYTES = 4 * 1024**3


class InputError(Exception):
    """An input that cannot be had: ``code`` and a message a user can act on (made permanent)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


async def resolve_input(storage: Storage, prefix: str, tenant: str, ref: InputRef) -> tuple[str, str]:
    """``(storage key, file name)`` of an uploaded input; :class:`InputError` if it is not there."""
    base = f"{prefix}{'/' if prefix and not prefix.endswith('/') else ''}uploads/{tenant}/{ref.upload_id}/"
    found = [info.key async for info in storage.list(base)]
    if len(found) != 1:
        what = "no object" if not found else f"{len(found)} objects"
        raise InputError("input_not_found", f"upload {ref.upload_id} has {what} in storage; upload it again.")
    return found[0], found[0].rsplit("/", 1)[-1]


async def download_input(
    storage: Storage | None,
    prefix: str,
    tenant: str,
    ref: InputRef,
    folder: Path,
    name: str,
    *,
    max_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    url_client: Callable[[], Any] | None = None,
) -> Path:
    """Fetch one input into ``folder`` (size-capped) and return its path."""
    if ref.upload_id is not None:
        if storage is None:
            raise RuntimeError("the runtime has no storage to read uploads from")
        key, filename = await resolve_input(storage, prefix, tenant, ref)
        path = folder / f"{name}-{filename}"
        changed = InputError("input_changed", f"upload {ref.upload_id} was replaced after it was completed.")
        try:
            sealed = await check_sealed(storage, key)  # the file verified at completion, still
            await _write(path, storage.open_read(key, if_match=sealed.etag), max_bytes)
        except ObjectChangedError:
            raise changed from None
        except StorageError as exc:
            raise InputError("input_not_found", f"upload {ref.upload_id} cannot be read: {exc}") from exc
        return path
    assert ref.url is not None
    path = folder / f"{name}-{sanitize_filename(ref.url.path.rsplit('/', 1)[-1] if ref.url.path else 'input')}"
    client = (url_client or _default_url_client)()
    async with client, client.stream("GET", str(ref.url)) as response:
        if response.status_code != 200:
            raise InputError("input_unavailable", f"GET {ref.url} answered {response.status_code}.")
        await _write(path, response.aiter_bytes(), max_bytes)
    return path


def _default_url_client() -> Any:
    from services.common.ssrf_transport import guarded_client

    return guarded_client(timeout_s=60.0)


async def _write(path: Path, chunks: Any, max_bytes: int) -> None:
    size = 0
    with path.open("wb") as handle:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise InputError("input_too_large", f"the input is larger than {max_bytes} bytes.")
            await asyncio.to_thread(handle.write, chunk)


async def download_key(storage: Storage, key: str, path: Path, max_bytes: int) -> Path:
    """Fetch the object ``key`` (a job's own result) into ``path``, size-capped."""
    await _write(path, storage.open_read(key), max_bytes)
    return path


async def read_if_present(storage: Storage, key: str) -> bytes | None:
    """The object ``key`` in memory, or ``None`` when there is none."""
    try:
        return await storage.read_all(key)
    except ObjectNotFoundError:
        return None


def file_digest(path: Path) -> tuple[int, str]:
    """``(size, sha256 hex)`` of a file, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


async def as_coro(awaitable: Awaitable[Any]) -> Any:
    """Await any awaitable (for ``run_coroutine_threadsafe``)."""
    return await awaitable
