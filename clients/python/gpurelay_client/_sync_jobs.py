"""``client.uploads`` and ``client.jobs`` of the blocking client (``_async_jobs`` is the twin)."""

from __future__ import annotations

import builtins
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpurelay_client import _catalog, _jobs, _uploads
from gpurelay_client._artifacts import ArtifactFile, downloadable
from gpurelay_client._events import Event
from gpurelay_client._jobs import InputValue, deadline_of
from gpurelay_client._models import JobKind, JobList, JobOut, JobsCancelOut, JobStatus, PresignedUpload, UploadOut
from gpurelay_client._uploads import ProgressCallback, UploadSource

if TYPE_CHECKING:
    from gpurelay_client._client import Client

JobRef = str | JobOut
"""A job: its id, or its record."""


def job_id(job: JobRef) -> str:
    """The id of ``job``."""
    return job if isinstance(job, str) else job.id


class Uploads:
    """``/v1/uploads``: files to storage through pre-signed URLs."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._retries = client.options.max_retries

    def upload(
        self,
        source: UploadSource,
        *,
        content_type: str | None = None,
        filename: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> UploadOut:
        """Upload a path, bytes or a binary file object; the completed upload (its ``id`` is a job input).

        The bytes stream to the pre-signed URL (``on_progress(sent, total)`` after each chunk); the
        content type comes from the file name's suffix, else from the bytes, unless given.
        """
        retries = self._retries
        return self._client._run(_uploads.upload_flow(source, content_type, filename, on_progress, retries))

    def create(self, filename: str, content_type: str, size: int) -> PresignedUpload:
        """Only declare an upload: where to PUT ``size`` bytes (then :meth:`complete`)."""
        return self._client._run(_uploads.create_flow(filename, content_type, size, self._retries))

    def complete(self, upload_id: str) -> UploadOut:
        """Verify the stored bytes and complete the upload (safe to repeat)."""
        return self._client._run(_uploads.complete_flow(upload_id, self._retries))

    def get(self, upload_id: str) -> UploadOut:
        """An upload's record."""
        return self._client._run(_uploads.get_flow(upload_id, self._retries))


class Jobs:
    """``/v1/jobs``: submit, read, list, cancel, follow, wait for and download jobs."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._retries = client.options.max_retries

    def create(
        self,
        kind: JobKind | str,
        inputs: Mapping[str, InputValue] | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        webhook: Mapping[str, Any] | str | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
        delay_s: float | None = None,
        run_at: datetime | None = None,
        concurrency_key: str | None = None,
    ) -> JobOut:
        """Submit a job. Inputs that are local files (paths, bytes, file objects) are uploaded first;
        upload ids, uploads and URLs are passed on. A retried request never makes a second job: it
        carries ``idempotency_key`` (a fresh one when none is given)."""
        spec = {"priority": priority, "delay_s": delay_s, "run_at": run_at, "concurrency_key": concurrency_key}
        flow = _jobs.create_flow(
            kind,
            inputs or {},
            params,
            webhook=webhook,
            idempotency_key=idempotency_key,
            spec=spec,
            retries=self._retries,
        )
        return self._client._run(flow)

    def get(self, job: JobRef) -> JobOut:
        """A job's record (artifacts with fresh download URLs)."""
        return self._client._run(_jobs.get_flow(job_id(job), self._retries))

    def list_page(
        self,
        *,
        status: JobStatus | None = None,
        kind: JobKind | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> JobList:
        """One page of jobs, newest first; ``next_cursor`` asks for the next."""
        filters = {"status": status, "kind": kind, "created_after": created_after, "created_before": created_before}
        flow = _jobs.page_flow({**filters, "limit": limit}, cursor, self._retries)
        return self._client._run(flow)

    def list(
        self,
        *,
        status: JobStatus | None = None,
        kind: JobKind | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
    ) -> Iterator[JobOut]:
        """Every job that matches, newest first, fetched a page of ``limit`` at a time as you iterate."""
        cursor: str | None = None
        while True:
            page = self.list_page(
                status=status,
                kind=kind,
                created_after=created_after,
                created_before=created_before,
                limit=limit,
                cursor=cursor,
            )
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, job: JobRef) -> JobOut:
        """Ask for cancellation (safe to repeat; :class:`Conflict` once the job ended)."""
        return self._client._run(_jobs.cancel_flow(job_id(job), self._retries))

    def cancel_many(
        self,
        ids: Sequence[str] | None = None,
        *,
        kind: JobKind | None = None,
        status: JobStatus | None = None,
        subject: str | None = None,
        created_before: datetime | None = None,
    ) -> JobsCancelOut:
        """Cancel the jobs named by ``ids``, or every job the filter matches (up to the gateway's bound;
        ``more`` says more matched): one result per job; safe to repeat."""
        where = {"kind": kind, "status": status, "subject": subject, "created_before": created_before}
        flow = _catalog.cancel_many_flow(ids, where, self._retries)
        return self._client._run(flow)

    def stream(self, job: JobRef, *, after: str | int | None = None) -> Iterator[Event]:
        """The job's events from the start (or after stream sequence ``after``), live, until its terminal
        event; a cut connection is resumed from the last event, with no gap and no repeat."""
        return self._client._events(self._client.options.job_events_url(job_id(job)), after)

    def wait(self, job: JobRef, *, timeout: float | None = None) -> JobOut:
        """The job's record once it ended (succeeded, failed or canceled), following its events;
        :class:`APITimeoutError` after ``timeout`` seconds."""
        deadline, retries = deadline_of(timeout), self._retries
        record = self.get(job)
        if record.status not in _jobs.TERMINAL_STATUSES:
            url = self._client.options.job_events_url(record.id)
            for event in self._client._events(url, None, deadline):
                if event.terminal:
                    break
        return self._client._run(_jobs.settle_flow(record.id, deadline, retries))

    def run(
        self,
        kind: JobKind | str,
        inputs: Mapping[str, InputValue] | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        webhook: Mapping[str, Any] | str | None = None,
        idempotency_key: str | None = None,
    ) -> JobOut:
        """:meth:`create` then :meth:`wait`: the job that succeeded, or :class:`JobFailed`."""
        job = self.create(kind, inputs, params, webhook=webhook, idempotency_key=idempotency_key)
        return _jobs.succeeded(self.wait(job, timeout=timeout))

    def download_artifacts(
        self, job: JobRef, folder: str | os.PathLike[str], *, names: Collection[str] | None = None
    ) -> builtins.list[Path]:
        """Download every artifact of the job into ``folder`` (its names as relative paths), each
        checked against its recorded sha256 and size (:class:`ChecksumMismatch`); their paths. ``names``: only
        these artifacts (each must be one of the job's)."""
        record, paths = self.get(job), []
        for artifact in downloadable(record, names):
            target = ArtifactFile(Path(folder), artifact)
            try:
                paths.append(self._client._download(str(artifact.url), target))
            except BaseException:
                target.abort()
                raise
        return paths
