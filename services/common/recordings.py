"""A session's recording read back from storage (:mod:`contracts.recordings.layout`): its head, its whole
manifest, a stored copy it names. The gateway's ``GET /v1/sessions/{id}/recording``, the export job and a
replay's feeder read through here; the names are the session's own (the tenant's results), so a
recording can name nothing outside them (:func:`~services.common.storage.result_key` refuses ``..``).
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from contracts.recordings.layout import HEAD_NAME, RecordingHead, assemble, index_name
from contracts.recordings.manifest import RecordingManifest
from services.common.storage import ObjectNotFoundError, Storage, result_key

INDEX_READS = 8
"""Index files read at once."""


class RecordingUnreadableError(Exception):
    """A stored recording file does not hold what its layout says."""


class StoredRecording:
    """One session's recording in ``storage`` (``prefix``: the deployment's storage prefix)."""

    def __init__(self, storage: Storage, prefix: str, tenant: str, session_id: str) -> None:
        self.storage, self.prefix, self.tenant, self.session_id = storage, prefix, tenant, session_id

    def key(self, name: str) -> str:
        """The storage key of ``name`` (a manifest's ``key``) within the session's results."""
        return result_key(self.prefix, self.tenant, self.session_id, name)

    async def read(self, name: str) -> bytes:
        """A stored copy the manifest names (``ObjectNotFoundError`` when it is gone)."""
        return await self.storage.read_all(self.key(name))

    async def head(self) -> RecordingHead | None:
        """The head, or ``None`` when the session has no recording (yet)."""
        try:
            data = await self.read(HEAD_NAME)
        except ObjectNotFoundError:
            return None
        try:
            return RecordingHead.model_validate_json(data)
        except ValidationError as exc:
            raise RecordingUnreadableError(f"{HEAD_NAME}: {exc.error_count()} errors") from exc

    async def manifest(self) -> RecordingManifest | None:
        """The whole manifest (the head with its frames), or ``None`` without a recording."""
        head = await self.head()
        if head is None:
            return None
        limit = asyncio.Semaphore(INDEX_READS)

        async def index(number: int) -> bytes:
            async with limit:
                return await self.read(index_name(number))

        try:
            indexes = await asyncio.gather(*(index(n) for n in range(1, head.index_files + 1)))
            return assemble(head, list(indexes))
        except (ObjectNotFoundError, ValidationError) as exc:
            raise RecordingUnreadableError(f"the recording's frame index is incomplete or malformed: {exc}") from exc
