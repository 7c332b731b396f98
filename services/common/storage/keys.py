"""Object keys: the one rule for a safe key, and the layout of upload and result keys.

Keys are relative, ``/``-separated object names. They never start with ``/``, never contain
``\\``, NUL or other control characters, and have no empty, ``.`` or ``..`` segment, so a key
means the same object on S3 and on the local file system. The key layout follows
ARCHITECTURE.md: ``{prefix}uploads/{tenant}/{upload_id}/{filename}`` and
``{prefix}results/{tenant}/{job_id}/{artifact}``. A client's file name becomes one safe segment
(:func:`sanitize_filename`), and a download names it in its Content-Disposition.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from services.common.storage.errors import InvalidKeyError

MAX_KEY_BYTES = 1024

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
"""NUL and the other control characters: refused in keys and in the content types signed beside them."""


def validate_key(key: str) -> str:
    """Return ``key`` unchanged, or raise :class:`InvalidKeyError` if it is not a safe key."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise InvalidKeyError(f"key must be relative: {key!r}")
    if "\\" in key:
        raise InvalidKeyError(f"key may not contain a backslash: {key!r}")
    if CONTROL_CHARACTERS.search(key):
        raise InvalidKeyError(f"key may not contain NUL or control characters: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(f"key has an empty, '.' or '..' segment: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return a listing prefix unchanged: empty, or a key optionally ending with one ``/``."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_filename(name: str, max_len: int = 200) -> str:
    """A safe single key segment from a client's file name: its base name, ``[A-Za-z0-9._-]``."""
    base = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    clean = _UNSAFE.sub("_", base).strip("._")
    if not clean:
        return "file"
    stem, dot, ext = clean.rpartition(".")
    if dot and stem and len(ext) <= 16:
        return stem[: max_len - len(ext) - 1].rstrip("._") + "." + ext
    return clean[:max_len]


def _segment(value: str, what: str) -> str:
    if "/" in value:
        raise InvalidKeyError(f"{what} may not contain '/': {value!r}")
    return validate_key(value)


def _prefix(prefix: str) -> str:
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return validate_prefix(prefix)


def upload_key(prefix: str, tenant: str, upload_id: str, filename: str) -> str:
    """``{prefix}uploads/{tenant}/{upload_id}/{filename}``, the file name sanitised."""
    return validate_key(
        f"{_prefix(prefix)}uploads/{_segment(tenant, 'tenant')}/"
        f"{_segment(upload_id, 'upload id')}/{sanitize_filename(filename)}"
    )


def results_prefix(prefix: str, tenant: str, job_id: str) -> str:
    """``{prefix}results/{tenant}/{job_id}/``: everything a job produced."""
    return f"{_prefix(prefix)}results/{_segment(tenant, 'tenant')}/{_segment(job_id, 'job id')}/"


_RESULT_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
"""A segment under a job's results: what :func:`result_key` makes (no ``.``/``..``, no ``%``)."""


def check_result_key(prefix: str, tenant: str, job_id: str, key: str) -> str:
    """``key`` if it names an object under the job's :func:`results_prefix`, else :class:`InvalidKeyError`.

    The one rule for where a job's artifacts may be: the ingest route refuses other keys, and the
    gateway signs download URLs only for keys that pass. Below the prefix every segment must be
    what :func:`result_key` writes, so ``..``, empty segments, backslashes and percent-encoded
    forms are refused rather than interpreted.
    """
    base = results_prefix(prefix, tenant, job_id)
    validate_key(key)
    rest = key[len(base) :] if key.startswith(base) else ""
    if not rest or not all(_RESULT_SEGMENT.fullmatch(segment) for segment in rest.split("/")):
        raise InvalidKeyError(f"key {key!r} is not under the results of job {job_id!r} ({base!r})")
    return key


def result_key(prefix: str, tenant: str, job_id: str, artifact: str) -> str:
    """``{prefix}results/{tenant}/{job_id}/{artifact}``; ``artifact`` may hold ``/`` sub-folders."""
    segments = artifact.replace("\\", "/").split("/")
    parts = [sanitize_filename(part) for part in segments if part not in ("", ".", "..")]
    if not parts:
        raise InvalidKeyError(f"empty artifact name: {artifact!r}")
    return validate_key(
        f"{_prefix(prefix)}results/{_segment(tenant, 'tenant')}/{_segment(job_id, 'job id')}/" + "/".join(parts)
    )


def content_disposition(filename: str) -> str:
    """An ``attachment`` Content-Disposition with an ASCII fallback and RFC 5987 ``filename*``."""
    ascii_name = sanitize_filename(filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
