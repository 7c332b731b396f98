"""The client's exceptions: one base, API answers by status (each carrying the problem document), and
the failures of what the client does on its own (transport, streams, jobs, sessions, checksums, webhooks)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gpurelay_client._models import FieldProblem, JobError, JobOut, Problem


class GpurelayError(Exception):
    """Base of every error this client raises."""


class APIConnectionError(GpurelayError):
    """The server could not be reached, or the connection broke before an answer (after the retries)."""


class APITimeoutError(APIConnectionError):
    """A request, or a wait for a job or an event, took longer than allowed."""


class APIError(GpurelayError):
    """The server answered an error: ``status`` and its RFC 9457 ``problem`` document."""

    def __init__(self, status: int, problem: Problem, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {problem.title}: {problem.detail}")
        self.status = status
        self.problem = problem
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}

    @property
    def title(self) -> str:
        """The problem's title."""
        return self.problem.title

    @property
    def detail(self) -> str:
        """The problem's detail: what went wrong with this request."""
        return self.problem.detail

    @property
    def type(self) -> str:
        """The problem's type URI (``about:blank`` when the server names none)."""
        return self.problem.type

    @property
    def errors(self) -> list[FieldProblem]:
        """The fields at fault (a 422), each with ``loc``, ``msg`` and ``type``."""
        return list(self.problem.errors or [])

    @property
    def code(self) -> str | None:
        """A machine-readable ``code`` the problem carries (``quota_max_queued``, ``invalid_record``), if any."""
        extra = self.problem.model_extra or {}
        return str(extra["code"]) if extra.get("code") is not None else None

    @property
    def retry_after_s(self) -> float | None:
        """The answer's ``Retry-After`` in seconds, when it sent one in that form."""
        return retry_after_seconds(self.headers)


class BadRequest(APIError):
    """400."""


class Unauthorized(APIError):
    """401: no credential, or not a valid one."""


class PermissionDenied(APIError):
    """403: the credential may not do this (a token's scopes, kinds or robot)."""


class NotFound(APIError):
    """404: no such resource for this tenant (another tenant's id answers exactly so)."""


class Conflict(APIError):
    """409: the resource is not in a state that allows it (a job that ended, an upload without bytes)."""


class PayloadTooLarge(APIError):
    """413."""


class UnprocessableEntity(APIError):
    """422: the request is not valid; :attr:`errors` names each field at fault."""


class RateLimited(APIError):
    """429: too many requests or a quota; :attr:`retry_after_s` says when to try again."""


class InternalServerError(APIError):
    """500 and other 5xx answers but 503."""


class ServiceUnavailable(APIError):
    """503: a dependency is away for a moment; retried by the client before it is raised."""


STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: UnprocessableEntity,
    429: RateLimited,
    503: ServiceUnavailable,
}


def api_error(status: int, headers: Mapping[str, str], body: bytes, reason: str = "") -> APIError:
    """The error for an answer: its problem document, or one made from the status line and the text."""
    try:
        value: Any = json.loads(body) if body else None
    except ValueError:
        value = None
    if isinstance(value, dict) and {"title", "detail"} <= value.keys():
        problem = Problem.model_validate({"status": status, **value})
    else:
        text = body[:500].decode("utf-8", "replace")
        problem = Problem(status=status, title=reason or f"HTTP {status}", detail=text)
    default = InternalServerError if status >= 500 else APIError
    return STATUS_ERRORS.get(status, default)(status, problem, headers)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` given in seconds (an HTTP date is not honoured: servers here send seconds)."""
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86400 else None


class JobFailed(GpurelayError):
    """A job ended ``failed`` or ``canceled``: :attr:`job` is its record, :attr:`code` and :attr:`message` why."""

    def __init__(self, job: JobOut) -> None:
        error = job.error or JobError(code="canceled" if job.status == "canceled" else "failed")
        super().__init__(f"job {job.id} {job.status}: {error.code}: {error.message}")
        self.job, self.status, self.code, self.message, self.error = job, job.status, error.code, error.message, error


class StreamError(GpurelayError):
    """An event stream could not be followed to its end (reconnections exhausted)."""


class SessionError(GpurelayError):
    """A live session's socket answered an error (``code``: ``rate_limited``, ``session_ended``, ``invalid`` ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class SessionClosed(GpurelayError):
    """The session's socket closed (``code`` the close code) before the answer that was waited for."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"the session socket closed ({code}) {reason}".strip())
        self.code, self.reason = code, reason


class ChecksumMismatch(GpurelayError):
    """A downloaded artifact is not the file the server recorded (sha256 or size differ); it was not kept."""


class WebhookVerificationError(GpurelayError):
    """A webhook request does not carry a valid Standard Webhooks signature for the secret (or is stale)."""
