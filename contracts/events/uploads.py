"""Payload of ``upload.completed`` (``uploads.{tenant}.{upload_id}.completed``)."""

from __future__ import annotations

import re

from pydantic import ConfigDict, Field, field_validator

from contracts.base import Contract
from contracts.ids import ResourceId

UPLOAD_AWAITED = "Gpurelay-Upload-Awaited"
"""A header of ``upload.completed`` as the gateway publishes it: ``0`` when no job or session named the
upload while it was pending (the record's ``awaited``), so none waits on it and the dispatcher reads no
KV ``dispatcher_waits`` (issue 34: a message get and its reply an upload); ``1``, or none at all (a
republished copy, an older gateway's event): it reads them."""

_BAD_FILENAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def validate_filename(value: str) -> str:
    """A bare file name: no path separators, no control characters, not ``.`` or ``..``."""
    if _BAD_FILENAME.search(value) or value in {".", ".."} or value != value.strip():
        raise ValueError(f"filename must be a bare file name (got {value!r})")
    return value


class UploadCompletedPayload(Contract):
    """``upload.completed``: the gateway verified the object in storage (size, magic bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upload_id: ResourceId
    key: str = Field(min_length=1, max_length=1024, description="The storage key.")
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("filename")
    @classmethod
    def _bare(cls, value: str) -> str:
        return validate_filename(value)
