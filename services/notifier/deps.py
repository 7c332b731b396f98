"""FastAPI dependencies as ``Annotated`` aliases: the notifier state built in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.common.http.problem import ProblemError
from services.notifier.state import NotifierState


async def get_state(request: Request) -> NotifierState:
    """The notifier state built in the lifespan (503 while the notifier starts or stops)."""
    state: NotifierState | None = request.app.state.notifier
    if state is None:
        raise ProblemError(503, "The notifier is not running; retry.", headers={"Retry-After": "1"})
    return state


StateDep = Annotated[NotifierState, Depends(get_state)]
