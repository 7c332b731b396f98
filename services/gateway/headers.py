"""Numbers in request headers, read without trusting their length or their digits.

A header may carry thousands of digits (``int()`` refuses more than 4,300 with a ``ValueError``)
or characters that ``str.isdigit`` accepts and ``int`` does not (``²``). :func:`decimal` reads
only ASCII digits and saturates at :data:`TOO_LARGE`, larger than any size or offset we serve, so
a huge number is simply "too large" (413, 416, "to the end") and never an exception.
"""

from __future__ import annotations

import re
from typing import Literal

TOO_LARGE = 2**63
"""What any decimal of more than 19 significant digits reads as."""
_DIGITS = re.compile(rb"[0-9]+")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII | re.IGNORECASE)


def decimal(value: str | bytes | None) -> int | None:
    """A non-negative ASCII decimal, capped at :data:`TOO_LARGE`; ``None`` when ``value`` is not one."""
    if value is None:
        return None
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    raw = raw.strip(b" \t")
    if not _DIGITS.fullmatch(raw):
        return None
    significant = raw.lstrip(b"0")
    return int(significant or b"0") if len(significant) <= 19 else TOO_LARGE


def byte_range(header: str | None, size: int) -> tuple[int, int] | Literal[False] | None:
    """The one ``bytes=`` range of a ``Range`` header as ``(start, end)`` inclusive (RFC 9110 14.1.2).

    ``None``: serve the whole object. That answers no header, and also what RFC 9110 14.2 lets a
    server ignore: another unit, several ranges, a malformed one. ``False``: unsatisfiable (416):
    the first position is at or past the end (however many digits it has). A last position past the
    end means "to the end", a suffix longer than the object means all of it.
    """
    match = _RANGE.fullmatch((header or "").strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = (decimal(group) if group else None for group in match.groups())
    if first is None:
        suffix = last or 0
        return (max(size - suffix, 0), size - 1) if suffix > 0 and size > 0 else False
    if last is not None and last < first:
        return None  # an invalid byte-range-spec: ignored
    return (first, min(size - 1, TOO_LARGE if last is None else last)) if first < size else False
