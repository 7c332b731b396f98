"""Upload API bodies (``/v1/uploads``) and the upload record kept in KV ``uploads``.

A client declares a file (``UploadCreate``), gets a pre-signed PUT (``PresignedUpload``), sends the
bytes straight to storage, then asks the gateway to verify them (``POST /v1/uploads/{id}/complete``).
The gateway keeps one :class:`UploadRecord` per upload under the KV key ``{tenant}.{upload_id}``;
``UploadOut`` is what clients see of it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, ConfigDict, Field, field_validator

from contracts.base import Contract
from contracts.events.uploads import validate_filename
from contracts.ids import ResourceId, SubjectId, TenantId

_BODY = ConfigDict(extra="forbid")
_RECORD = ConfigDict(extra="forbid", frozen=True)


class UploadStatus(StrEnum):
    """``pending`` until the object has been verified in storage, then ``completed``."""

    PENDING = "pending"
    COMPLETED = "completed"


class UploadCreate(Contract):
    """Declare a file to upload: its name, media type and exact size in bytes."""

    model_config = _BODY

    filename: str = Field(min_length=1, max_length=255, description="A bare file name, e.g. lap1.mp4.")
    content_type: str = Field(min_length=1, max_length=255, description="e.g. video/mp4.")
    size: int = Field(ge=1, description="The exact size of the file in bytes.")

    @field_validator("filename")
    @classmethod
    def _bare(cls, value: str) -> str:
        return validate_filename(value)


class PresignedUpload(Contract):
    """Where to send the bytes: make this request with ``headers`` verbatim before ``expires_at``."""

    model_config = _BODY

    id: ResourceId = Field(description="The upload id, used as a job input.")
    method: str = Field(description="The HTTP method, PUT.")
    url: str = Field(description="The pre-signed URL.")
    headers: dict[str, str] = Field(description="Headers the request must carry.")
    expires_at: datetime


class UploadOut(Contract):
    """An upload as clients see it."""

    model_config = _BODY

    id: ResourceId
    status: UploadStatus
    subject: SubjectId | None = Field(default=None, description="The end user whose token declared it.")
    filename: str
    content_type: str
    size: int
    created_at: datetime
    completed_at: datetime | None = None
    sha256: str | None = Field(default=None, description="Hex SHA-256 of the bytes, when computed.")


class UploadRecord(Contract):
    """The KV ``uploads`` value: written pending at presign, completed (compare-and-set) once verified."""

    model_config = _RECORD

    id: ResourceId
    tenant: TenantId
    subject: SubjectId | None = None
    key: str = Field(min_length=1, max_length=1024, description="The storage key.")
    status: UploadStatus = UploadStatus.PENDING
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=1)
    created_at: AwareDatetime
    completed_at: AwareDatetime | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    etag: str | None = Field(
        default=None,
        max_length=1024,
        description="The ETag of the object verified at completion (what its seal holds), so a concurrent "
        "complete that refused other bytes puts the seal back. None while pending, or completed before this was kept.",
    )
    awaited: bool | None = Field(
        default=None,
        description="Whether a job or session naming it was accepted while it was pending (and may wait for "
        "its completion); set before that job is published. None: a record written before this was kept.",
    )

    def to_out(self) -> UploadOut:
        """The client's view of this record."""
        return UploadOut.model_validate(self.model_dump(exclude={"tenant", "key", "awaited", "etag"}))
