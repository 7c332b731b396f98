"""Magic-byte sniffing: does an uploaded object's head match its declared content type?

Families, not exact types, are compared, because one container often goes by two names:

- ``video/mp4`` and ``video/quicktime`` are both ISO base media files (an ``ftyp`` box at offset 4;
  brand ``qt`` for QuickTime; old QuickTime files may start with another top-level atom). Either
  declaration accepts either file: players and decoders read both the same way.
- ``video/webm`` and ``video/x-matroska`` are both EBML (``1A 45 DF A3``); either accepts either.
- ``video/x-msvideo``: ``RIFF....AVI ``; ``image/jpeg``: ``FF D8 FF``; ``image/png``: the PNG
  signature; ``application/zip``: ``PK\\x03\\x04``, or ``PK\\x05\\x06`` (empty) or ``PK\\x07\\x08``
  (spanned).
"""

from __future__ import annotations

HEAD_BYTES = 64
"""How many leading bytes :func:`sniff` needs."""

_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")

FAMILIES: dict[str, str] = {
    "video/mp4": "isobmff",
    "video/quicktime": "isobmff",
    "video/webm": "ebml",
    "video/x-matroska": "ebml",
    "video/x-msvideo": "avi",
    "image/jpeg": "jpeg",
    "image/png": "png",
    "application/zip": "zip",
}
"""Declared content type → the container family its bytes must show."""


def sniff(head: bytes) -> str | None:
    """The content type the first bytes of a file show, or ``None`` when none is recognised."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if len(head) >= 8 and head[4:8] in _QUICKTIME_ATOMS:
        return "video/quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head else "video/x-matroska"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "application/zip"
    return None


def matches(declared: str, head: bytes) -> bool:
    """Whether ``head`` is of the same container family as the ``declared`` content type."""
    family = FAMILIES.get(declared.split(";", 1)[0].strip().lower())
    found = sniff(head)
    return family is not None and found is not None and FAMILIES[found] == family
