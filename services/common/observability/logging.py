"""Logging for every service: JSON lines in production, a readable line on a terminal.

:func:`setup_logging` installs one handler on the root logger (calling it again replaces it).
Every record carries ``service`` and, when set, the context fields ``tenant``, ``job_id`` and
``event_id`` from :func:`log_context` (context variables, so they follow asyncio tasks).

No secret reaches the output: :class:`RedactFilter` renders ``SecretStr`` values as
``**********``, blanks the values of secret-looking keys in extras (``authorization``,
``*_secret``, ``*_token``, ...), and scrubs API keys (``gr_...``), webhook secrets
(``whsec_...``), bearer tokens, ``Authorization`` headers and signed-URL query values from the
message, the extras and the traceback; the formatters scrub their final output once more.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any, Literal

from pydantic import SecretStr
from pythonjsonlogger.json import JsonFormatter

from services.common.config import BaseServiceSettings

MASK = "**********"
Format = Literal["auto", "json", "console"]
CONTEXT_FIELDS = ("tenant", "job_id", "event_id")

_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpurelay_tenant", default=None)
_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpurelay_job_id", default=None)
_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpurelay_event_id", default=None)
_VARS = {"tenant": _tenant, "job_id": _job_id, "event_id": _event_id}

# Value classes stop at quotes, backslashes and white space, so scrubbing JSON text keeps it valid.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:[A-Za-z]+\s+)?[^\s\"'\\,;}]+"),
        rf"\g<1>{MASK}",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), f"Bearer {MASK}"),
    (re.compile(r"(?<![A-Za-z0-9])gr_[A-Za-z0-9_-]+"), f"gr_{MASK}"),
    (re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9+/=_-]+"), f"whsec_{MASK}"),
    (
        re.compile(
            r"(?i)([?&;](?:sig|signature|token|x-amz-signature|x-amz-credential|x-amz-security-token)=)"
            r"[^&\s\"'\\#]+"
        ),
        rf"\g<1>{MASK}",
    ),
)
_SECRET_KEY = re.compile(
    r"(?i)(?:^|[_-])(?:authorization|cookie|set-cookie|password|passwd|secret|token|"
    r"api[_-]?key|signature|sig|credentials?)$"
)
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def scrub(text: str) -> str:
    """``text`` with every known secret pattern masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, key: str | None = None) -> Any:
    """``value`` with secrets masked: secret keys, ``SecretStr`` and patterns, recursively."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, SecretStr) or (key is not None and _SECRET_KEY.search(key)):
        return MASK
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bytes):
        return scrub(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    return scrub(str(value))


@contextmanager
def log_context(tenant: str | None = None, job_id: str | None = None, event_id: str | None = None) -> Iterator[None]:
    """Add the given fields to every record logged inside the block (and tasks started there)."""
    given = {"tenant": tenant, "job_id": job_id, "event_id": event_id}
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in given.items() if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_context() -> dict[str, str]:
    """The context fields set right now."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Adds ``service`` and the :func:`log_context` fields to each record."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        if self.service and not hasattr(record, "service"):
            record.service = self.service
        for name, value in current_context().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class RedactFilter(logging.Filter):
    """Masks secrets in the message, its arguments, the extras and the traceback of each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, Mapping) and not record.args:
            record.msg = redact(record.msg)
        else:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string must not crash the caller
                message = f"{record.msg!s} {record.args!r}"
            record.msg, record.args = scrub(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                setattr(record, key, redact(value, key))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, service, context and extras."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            json_ensure_ascii=False,
        )

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class ConsoleFormatter(logging.Formatter):
    """``12:00:00 INFO  logger: message  tenant=... job_id=...`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if getattr(record, name, None)]
        if fields:
            head, sep, tail = line.partition("\n")
            line = f"{head}  {' '.join(fields)}{sep}{tail}"
        return scrub(line)


def _resolve(settings_or_level: BaseServiceSettings | str | int, fmt: Format) -> tuple[int, Format]:
    if isinstance(settings_or_level, BaseServiceSettings):
        level: str | int = settings_or_level.log_level
        if fmt == "auto":
            fmt = settings_or_level.log_format
    else:
        level = settings_or_level
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise ValueError(f"unknown log level {level!r}")
        return resolved, fmt
    return level, fmt


def setup_logging(
    settings_or_level: BaseServiceSettings | str | int = "INFO",
    fmt: Format = "auto",
    service: str = "",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Configure the root logger once for this process; returns the installed handler.

    ``fmt="auto"`` (with settings: their ``log_format``) writes JSON unless ``stream`` is a TTY.
    """
    level, fmt = _resolve(settings_or_level, fmt)
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        is_tty = getattr(out, "isatty", None)
        fmt = "console" if callable(is_tty) and is_tty() else "json"
    handler = logging.StreamHandler(out)
    handler.set_name("gpurelay")
    handler.setFormatter(ConsoleFormatter() if fmt == "console" else RedactingJsonFormatter())
    handler.addFilter(ContextFilter(service))
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "gpurelay"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
