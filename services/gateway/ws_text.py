"""A client's text message on a gateway WebSocket, read one way: a JSON object, bounded, numbers finite.

Every socket's handler reads a client's JSON through :func:`json_object`, never ``json.loads``
(which recurses into ``[[[[…`` until ``RecursionError`` and takes ``NaN``): the text is parsed by
:func:`contracts.base.load_json` (no ``NaN``/``Infinity``, no number that overflows, nesting
bounded, no lone surrogate) after a bound on its length. :class:`BadMessageError` says why a
message is not one; the socket answers it as its protocol says (an error message, or a close).
"""

from __future__ import annotations

from typing import Any

from contracts.base import load_json


class BadMessageError(Exception):
    """A client's message that is not one JSON object within bounds (the text says why)."""


def json_object(text: str | None, max_chars: int) -> dict[str, Any]:
    """The JSON object of a text message (``None``: the message was binary); else :class:`BadMessageError`."""
    if text is None:
        raise BadMessageError("Send a JSON text message, not a binary one.")
    if len(text) > max_chars:
        raise BadMessageError(f"A text message may not exceed {max_chars} characters.")
    try:
        value = load_json(text)
    except ValueError as exc:
        raise BadMessageError(f"A text message must be plain JSON ({exc}).") from None
    if not isinstance(value, dict):
        raise BadMessageError("A text message must be a JSON object.")
    return value
