"""Job flows both clients run: inputs (uploaded for you when they are files), create with an
``Idempotency-Key``, read, list a page, cancel, settle a finished job's record."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import IO, Any, Union

from gpurelay_client._core import Flow, Request, Sleep, call, segment
from gpurelay_client._errors import APITimeoutError, JobFailed
from gpurelay_client._models import JobList, JobOut, PresignedUpload, UploadOut
from gpurelay_client._uploads import upload_flow

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
InputValue = Union[
    str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], UploadOut, PresignedUpload, Mapping[str, Any]
]
"""A job input: an upload id (``upl_...``), an upload, an ``http(s)://`` URL, ``{"upload_id"|"url": ...}``,
or a local file (a path, bytes, a binary file object), which is uploaded first."""


def _local(value: InputValue) -> bool:
    """Whether ``value`` is a file to upload (rather than a reference to one)."""
    if isinstance(value, str):
        return not value.startswith(("upl_", "http://", "https://"))
    return not isinstance(value, UploadOut | PresignedUpload | Mapping)


def input_ref(name: str, value: InputValue) -> dict[str, Any]:
    """The API's reference for an input that needs no upload."""
    if isinstance(value, UploadOut | PresignedUpload):
        return {"upload_id": value.id}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        return {"url": value} if value.startswith(("http://", "https://")) else {"upload_id": value}
    raise TypeError(f"input {name!r}: {type(value).__name__} is not an input")


def inputs_flow(inputs: Mapping[str, InputValue], retries: int) -> Flow[dict[str, Any]]:
    """Every input as a reference, uploading local files (in order) first."""
    refs: dict[str, Any] = {}
    for name, value in inputs.items():
        if _local(value):
            source: Any = value
            upload = yield from upload_flow(source, None, None, None, retries)
            refs[name] = {"upload_id": upload.id}
        else:
            refs[name] = input_ref(name, value)
    return refs


def create_flow(
    kind: str,
    inputs: Mapping[str, InputValue],
    params: Mapping[str, Any] | None,
    *,
    webhook: Mapping[str, Any] | str | None,
    idempotency_key: str | None,
    spec: Mapping[str, Any],
    retries: int,
) -> Flow[JobOut]:
    """``POST /v1/jobs`` after the inputs' uploads. The ``Idempotency-Key`` (a fresh one when none is
    given) makes a retried request answer the job the first one created, never a second job."""
    refs = yield from inputs_flow(inputs, retries)
    body: dict[str, Any] = {"kind": kind, "inputs": refs, "params": dict(params or {})}
    if webhook is not None:
        body["webhook"] = {"url": webhook} if isinstance(webhook, str) else dict(webhook)
    body.update({k: v.isoformat() if isinstance(v, datetime) else v for k, v in spec.items() if v is not None})
    headers = {"Idempotency-Key": idempotency_key or f"gpurelay-py-{uuid.uuid4()}"}
    return (yield from call(Request("POST", "/v1/jobs", json=body, headers=headers), JobOut, retries))


def get_flow(job_id: str, retries: int) -> Flow[JobOut]:
    """``GET /v1/jobs/{id}``: the record, with fresh artifact download URLs."""
    return call(Request("GET", f"/v1/jobs/{segment(job_id)}"), JobOut, retries)


def page_flow(filters: Mapping[str, Any], cursor: str | None, retries: int) -> Flow[JobList]:
    """``GET /v1/jobs``: one page, newest first."""
    params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items() if v is not None}
    if cursor is not None:
        params["cursor"] = cursor
    return call(Request("GET", "/v1/jobs", params=params), JobList, retries)


def cancel_flow(job_id: str, retries: int) -> Flow[JobOut]:
    """``POST /v1/jobs/{id}/cancel`` (idempotent; 409 once the job ended)."""
    return call(Request("POST", f"/v1/jobs/{segment(job_id)}/cancel", retryable=True), JobOut, retries)


def settle_flow(job_id: str, deadline: float | None, retries: int) -> Flow[JobOut]:
    """The record once it shows a terminal status: after the terminal event the dispatcher writes the
    record a moment later, so it is read again (briefly pausing) until then, or until ``deadline``."""
    pause = 0.05
    while True:
        job = yield from get_flow(job_id, retries)
        if job.status in TERMINAL_STATUSES:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise APITimeoutError(f"job {job_id} did not end in time (status {job.status})")
        yield Sleep(pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(1.0, pause * 2)


def succeeded(job: JobOut) -> JobOut:
    """``job`` when it succeeded; :class:`JobFailed` (its error code and message) otherwise."""
    if job.status != "succeeded":
        raise JobFailed(job)
    return job


def deadline_of(timeout: float | None) -> float | None:
    """The monotonic time ``timeout`` seconds from now."""
    return None if timeout is None else time.monotonic() + timeout
