"""Identifiers that travel inside NATS subjects, KV keys and storage keys.

An id is one subject token: it can never contain ``.``, ``*``, ``>`` or white space, so a
hostile id cannot widen a subscription or address another tenant's data.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

import uuid_utils
from pydantic import AfterValidator, Field

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""A token: 1-64 characters of ASCII letters, digits, ``_`` and ``-``."""


class InvalidIdError(ValueError):
    """An id that would not be a single safe subject token."""


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` when it is a safe token, else raise :class:`InvalidIdError`."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidIdError(f"{what} must be 1-64 characters of letters, digits, '_' or '-' (got {value!r})")
    return value


def _tenant(value: str) -> str:
    return validate_id(value, "tenant")


def _job(value: str) -> str:
    return validate_id(value, "job id")


def _any(value: str) -> str:
    return validate_id(value)


TenantId = Annotated[str, Field(pattern=ID_PATTERN.pattern, min_length=1, max_length=64), AfterValidator(_tenant)]
"""A tenant: the unit of isolation. Every resource belongs to exactly one."""
JobId = Annotated[str, Field(pattern=ID_PATTERN.pattern, min_length=1, max_length=64), AfterValidator(_job)]
"""A job id, ``job_`` plus a UUIDv7 in hex."""
ResourceId = Annotated[str, Field(pattern=ID_PATTERN.pattern, min_length=1, max_length=64), AfterValidator(_any)]
"""Any other id used as a subject token (upload, session, robot, endpoint)."""


IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[ -~]{1,255}$")
"""A client's ``Idempotency-Key`` (a job's, a batch item's, a frame's): 1-255 printable ASCII characters."""
IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_KEY_CHARS = r"^[ -~]+$"
"""The same rule's characters, for a JSON Schema ``pattern`` beside ``maxLength``."""
IdempotencyKeyText = Annotated[str, Field(pattern=IDEMPOTENCY_KEY_CHARS, min_length=1, max_length=IDEMPOTENCY_KEY_MAX)]
"""An ``Idempotency-Key`` in a body (:data:`IDEMPOTENCY_KEY_PATTERN`, as JSON Schema states it)."""


SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@|+=-]{0,127}$")
"""An app's end user as the app names it: 1-128 characters, letters, digits and ``_.:@|+=-`` (an email, an
``auth0|...`` id). Never part of a subject or a KV key as it is (see :func:`subject_digest`)."""
SubjectId = Annotated[str, Field(pattern=SUBJECT_PATTERN.pattern, min_length=1, max_length=128)]
"""The end user (``subject``) a scoped token acts for, recorded on what it creates."""


def subject_digest(subject: str) -> str:
    """A KV-safe stand-in for ``subject``: 32 hex characters of its SHA-256."""
    return hashlib.sha256(subject.encode()).hexdigest()[:32]


def new_uuid7() -> str:
    """A time-ordered UUIDv7 as its canonical string, used for event ids."""
    return str(uuid_utils.uuid7())


def new_id(prefix: str) -> str:
    """A new time-ordered id such as ``job_0193a1...``: sortable, one subject token."""
    validate_id(prefix, "prefix")
    return f"{prefix}_{uuid_utils.uuid7().hex}"


def tenant_key(tenant: str, resource_id: str) -> str:
    """A KV key scoped to a tenant, ``{tenant}.{id}``: listing ``{tenant}.>`` sees only its own."""
    return f"{validate_id(tenant, 'tenant')}.{validate_id(resource_id)}"


def tenant_key_filter(tenant: str) -> str:
    """The KV key filter of every resource of ``tenant``."""
    return f"{validate_id(tenant, 'tenant')}.>"
