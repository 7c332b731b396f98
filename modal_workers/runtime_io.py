"""The runtime's I/O: the HTTP event sink, the cancel watch, input downloads and file digests.

* :class:`IngestSink` posts events to the gateway's ingest route
  (``POST /v1/internal/jobs/{id}/events``) with the job-scoped token, retrying transient failures
  (connection errors, 408, 429, 5xx) with exponential backoff. Each event keeps its id across
  resends and the gateway publishes it with ``Nats-Msg-Id`` = that id, so a resent event is
  stored once. 4xx answers other than 408/429 are not retried (the event or token is wrong).
* :func:`watch_cancel` subscribes (core NATS, no consumer) to ``jobs.{tenant}.{job}.cancel_requested``
  when the sink has a NATS connection (the local pool's ``NatsSink``), so a workload can stop early.
* :func:`resolve_input` / :func:`download_input` turn ``{"upload_id": ...}`` (the one object under
  ``{prefix}uploads/{tenant}/{upload_id}/``) or ``{"url": "https://..."}`` into a local file,
  bounded in size and time. An upload is read pinned to its seal (``input_changed`` when the file
  was replaced after its upload completed, see :mod:`services.common.storage.seals`).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from contracts.envelope import EventEnvelope
from contracts.job_specs import InputRef
from contracts.subjects import Namespace, Subjects
from services.common.storage import ObjectChangedError, Storage, StorageError, check_sealed
from services.common.storage.base import sanitize_filename

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DEFAULT_MAX_INPUT_BYTES = 4 * 1024**3


class InputError(Exception):
    """An input that cannot be had: ``code`` and a message a user can act on (made permanent)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class IngestSink:
    """Events to the gateway's ingest route with a job-scoped token, retried with backoff."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        attempts: int = 8,
        backoff_s: float = 0.2,
        backoff_max_s: float = 5.0,
        transport: Any = None,
    ) -> None:
        import httpx

        self.url, self.attempts, self.backoff_s, self.backoff_max_s = url, attempts, backoff_s, backoff_max_s
        headers = {"Authorization": f"Bearer {token}"}
        self._http = httpx.AsyncClient(headers=headers, timeout=30, transport=transport)

    @classmethod
    async def create(cls, url: str, token: str, **options: Any) -> IngestSink:
        """A sink posting to ``url`` (the factory the runtime calls on its loop)."""
        return cls(url, token, **options)

    async def send(self, subject_event: str, event: EventEnvelope) -> None:
        """POST one event until the gateway accepts it (202); raises after the last attempt."""
        import httpx

        body = {"events": [event.model_dump(mode="json", exclude_none=True)]}
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._http.post(self.url, json=body)
            except httpx.TransportError:
                if attempt == self.attempts:
                    raise
            else:
                if response.status_code < 400:
                    return
                if response.status_code not in RETRY_STATUSES or attempt == self.attempts:
                    response.raise_for_status()
            delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()


async def watch_cancel(sink: Any, tenant: str, job_id: str, on_cancel: Callable[[], None]) -> Any:
    """Call ``on_cancel`` when ``job.cancel_requested`` of the job is published; the subscription.

    Works with any sink holding a NATS client (``nc`` or ``_nc``) and a ``namespace``; returns
    ``None`` (nothing to watch) for other sinks, e.g. :class:`IngestSink` on Modal, where
    ``FunctionCall.cancel()`` stops the container instead.
    """
    nc = getattr(sink, "nc", None) or getattr(sink, "_nc", None)
    if nc is None:
        return None
    subject = Subjects(Namespace(getattr(sink, "namespace", ""))).job_event(tenant, job_id, "cancel_requested")

    async def on_msg(msg: Any) -> None:
        on_cancel()

    subscription = await nc.subscribe(subject, cb=on_msg)
    await nc.flush()  # subscribe only queues SUB: a cancel published before the server has it would be missed
    return subscription


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
    from services.common.ssrf import guarded_client

    return guarded_client(timeout_s=60.0)


async def _write(path: Path, chunks: Any, max_bytes: int) -> None:
    size = 0
    with path.open("wb") as handle:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise InputError("input_too_large", f"the input is larger than {max_bytes} bytes.")
            await asyncio.to_thread(handle.write, chunk)


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
