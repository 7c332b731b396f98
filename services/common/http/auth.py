"""The auth errors of every gpurelay app, as problem documents."""

from __future__ import annotations

from services.common.http.problem import ProblemError


def unauthorized(detail: str) -> ProblemError:
    """A 401 problem with the Bearer challenge (no credential, or one that is invalid or expired)."""
    return ProblemError(401, detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> ProblemError:
    """A 403 problem: a valid credential that does not cover this request."""
    return ProblemError(403, detail)


def missing_scope(*scopes: str) -> ProblemError:
    """The 403 of a token without any of ``scopes``: the problem names them (``missing_scope``)."""
    wanted = " or ".join(scopes)
    return ProblemError(
        403, f"This token lacks the scope {wanted}.", title="Missing scope", code="missing_scope",
        missing_scope=list(scopes),
    )  # fmt: skip


def narrowed(detail: str) -> ProblemError:
    """The 403 of a token whose ``kinds`` or ``robot_id`` leaves this resource out."""
    return ProblemError(403, detail, title="Outside the token's scope", code="outside_scope")
