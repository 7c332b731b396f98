"""Finite numbers, everywhere: the base of every contract model and the one reader of JSON text.

JSON has no NaN and no Infinity, but Python's ``json`` and pydantic take the literals ``NaN`` and
``Infinity`` (and ``1e400`` overflows to infinity), and pydantic writes a non-finite float back as
``null``: a record holding one can never be read again. So no contract takes one:

- :class:`Contract` is the base of every model here: its floats refuse NaN and ±Infinity (error
  type ``finite_number``), at any depth, nested models and lists included.
- :data:`JsonObject` (and :data:`JsonValue`) types a free-form JSON field (a result, an event's
  ``data``): a validator refuses a non-finite number anywhere inside it, with the same error type,
  and a value nested deeper than :data:`MAX_JSON_DEPTH`.
- :func:`load_json` parses JSON text the same way, for code that reads text itself (WebSocket
  messages, headers): no ``NaN``/``Infinity`` literals, no number that overflows, bounded depth,
  no lone surrogate; a ``ValueError`` otherwise.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError, from_json

MAX_JSON_DEPTH = 64
"""The deepest a free-form JSON value may nest (objects and arrays)."""


class Contract(BaseModel):
    """The base of every contract model: no float of it (or of a model it holds) takes NaN or ±Infinity.

    A subclass's own ``model_config`` adds to this one (pydantic merges them).
    """

    model_config = ConfigDict(allow_inf_nan=False)


def _where(path: list[str | int]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".") or "the value"


def non_finite_in(value: Any) -> str | None:
    """Why ``value`` (JSON-like data) is not plain JSON: a non-finite number or too deep a nesting (where),
    else ``None``. Iterative, so depth costs no recursion."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{item} at {_where(path)} is not a finite number"
        if isinstance(item, dict | list | tuple):
            if len(path) >= MAX_JSON_DEPTH:
                return f"{_where(path)} nests deeper than {MAX_JSON_DEPTH} levels"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((child, [*path, key]) for key, child in pairs)
    return None


def _finite_json(value: Any) -> Any:
    problem = non_finite_in(value)
    if problem is not None:
        raise PydanticCustomError("finite_number", "JSON numbers must be finite and nesting bounded: {problem}",
                                  {"problem": problem})  # fmt: skip
    return value


JsonValue = Annotated[Any, AfterValidator(_finite_json)]
"""Any JSON value whose numbers are finite and whose nesting is bounded."""
JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_json)]
"""A JSON object whose numbers are finite and whose nesting is bounded."""


def load_json(text: str | bytes) -> Any:
    """JSON text as Python data; ``ValueError`` for anything that is not plain JSON (see the module)."""
    value = from_json(text, allow_inf_nan=False, cache_strings=False)
    problem = non_finite_in(value)
    if problem is not None:
        raise ValueError(problem)
    return value
