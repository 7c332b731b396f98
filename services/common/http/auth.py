"""The auth errors of every gpurelay app, as problem documents."""

from __future__ import annotations

from services.common.http.problem import ProblemError


def unauthorized(detail: str) -> ProblemError:
    """A 401 problem with the Bearer challenge (no credential, or one that is invalid or expired)."""
    return ProblemError(401, detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> ProblemError:
    """A 403 problem: a valid credential that does not cover this request."""
    return ProblemError(403, detail)
