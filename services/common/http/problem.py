"""``application/problem+json`` (RFC 9457): the one owner of error responses of every gpurelay app.

The gateway and the notifier install :func:`install_error_handlers`; routes raise :class:`ProblemError`
(or answer :func:`problem`); :func:`use_problem_json_in_openapi` documents it. A NATS error that
says the event log is away for a moment (:data:`~services.common.nats.connection.NATS_AWAY`) is a 503 with
``Retry-After``, never a 500: clients retry it. Every 503, that one or a route's own
:class:`ProblemError`, is told to each :class:`~services.common.http.nats_failover.StuckServerWatch`
in ``app.state.nats_watches`` (one per NATS connection of the app: each asks its own server), so a
connection held by a server cut off from its cluster moves. A job record that no longer validates
(:class:`~contracts.record_repair.UnreadableRecordError`) is a 409 with ``code: invalid_record``.
"""

from __future__ import annotations

import contextlib
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from contracts.record_repair import INVALID_RECORD, UnreadableRecordError
from services.common.http.allowed import allow_header
from services.common.http.nats_failover import StuckServerWatch
from services.common.nats.connection import NATS_AWAY
from services.common.storage.errors import StorageError, StorageFullError

PROBLEM_JSON = "application/problem+json"
UNAVAILABLE_RETRY_AFTER_S = 1
"""The ``Retry-After`` of a 503 while NATS is away."""
log = logging.getLogger(__name__)


def problem(
    status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An RFC 9457 problem response (``type`` is ``about:blank``, ``title`` the status phrase)."""
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return JSONResponse({**body, **extra}, status_code=status, headers=headers, media_type=PROBLEM_JSON)


class ProblemError(Exception):
    """Raise anywhere in a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.title, self.headers, self.extra = status, detail, title, headers, extra


def field_error(loc: tuple[str | int, ...], msg: str, type_: str = "value_error") -> dict[str, Any]:
    """One entry of a 422 problem's ``errors`` list."""
    return {"loc": list(loc), "msg": msg, "type": type_}


def unprocessable(detail: str, *errors: dict[str, Any]) -> ProblemError:
    """A 422 naming the fields at fault."""
    return ProblemError(422, detail, title="Validation failed", errors=list(errors))


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [field_error(tuple(e.get("loc", ())), str(e.get("msg", "")), str(e.get("type", ""))) for e in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
    """Every error as problem+json: ours, FastAPI's validation errors, HTTP errors, a client gone
    mid-body (logged at INFO), NATS or the object storage away (503), the object storage full (507),
    the unexpected (500)."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        if exc.status == HTTPStatus.SERVICE_UNAVAILABLE:  # a route's own 503 (NATS did not take or answer)
            _tell_watches(request)
        return problem(exc.status, exc.detail, title=exc.title, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, "The request is not valid.", title="Validation failed", errors=_clean_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:  # every method of the path, not one route's
            headers["Allow"] = allow_header(request.app, request.scope["path"], headers.get("Allow", ""))
        return problem(exc.status_code, str(exc.detail), headers=headers)

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse | None:
        log.warning("NATS unavailable on %s %s: %r", _method(request), request.url.path, exc)
        _tell_watches(request)
        if await _closed_socket(request, WS_TRY_AGAIN_LATER, "NATS unavailable; retry"):
            return None
        detail = "The event log cannot answer right now (NATS reconnecting or electing a leader); retry."
        return problem(503, detail, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)})

    for unavailable in NATS_AWAY:
        app.add_exception_handler(unavailable, _unavailable)  # type: ignore[arg-type] # a Request's or a WebSocket's

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> JSONResponse:
        # A client that went away mid-body (a tab closed during an upload) is no server error: no
        # traceback at ERROR for an operator to chase. The answer goes nowhere; it is only for the log.
        log.info("client went away during %s %s", _method(request), request.url.path)
        return problem(400, "The request's body was cut short: the client went away.")

    @app.exception_handler(UnreadableRecordError)
    async def _unreadable(request: Request, exc: UnreadableRecordError) -> JSONResponse:
        log.warning("unreadable job record on %s %s: %s", _method(request), request.url.path, exc)
        detail = "The job's stored record is not valid and cannot be read."
        return problem(409, detail, title="Invalid record", code=INVALID_RECORD)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse | None:
        log.exception("unhandled error on %s %s", _method(request), request.url.path)
        if await _closed_socket(request, WS_INTERNAL_ERROR, "unexpected error"):
            return None
        return problem(500, "An unexpected error occurred; it has been logged.")

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError) -> JSONResponse | None:
        if isinstance(exc, StorageFullError):  # waiting will not help: an operator must make room
            log.error("object storage full on %s %s: %s", _method(request), request.url.path, exc)
            if await _closed_socket(request, WS_INTERNAL_ERROR, "object storage full"):
                return None
            return problem(507, "The object storage has no room left; nothing was stored.")
        if type(exc) is not StorageError:  # a missing, changed or invalid object no route answered: a bug
            return await _unexpected(request, exc)
        log.warning("object storage failed on %s %s: %s", _method(request), request.url.path, exc)
        if await _closed_socket(request, WS_TRY_AGAIN_LATER, "object storage unavailable; retry"):
            return None
        detail = "The object storage cannot answer right now; retry."
        return problem(503, detail, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)})


def _tell_watches(request: Request) -> None:
    """A request failed for want of NATS: each connection's server may be cut off from the cluster
    (each watch asks its own, and moves its connection if it does not answer)."""
    watches: tuple[StuckServerWatch, ...] = getattr(request.app.state, "nats_watches", ())
    for watch in watches:
        watch.failed()


class FieldProblem(BaseModel):
    """One field at fault in a 422."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented as a problem document."""
    return {status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses}


def use_problem_json_in_openapi(app: FastAPI) -> None:
    """Document every 4xx/5xx response as ``application/problem+json`` with the Problem schema."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in components["Problem"].pop("$defs", {}).items():
            components.setdefault(name, sub)
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                for status, response in operation.get("responses", {}).items():
                    if status[0] in "45":
                        response["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


WS_TRY_AGAIN_LATER, WS_INTERNAL_ERROR = 1013, 1011


def _method(conn: Request) -> str:
    """The request's method, ``WEBSOCKET`` for a socket (Starlette hands the handlers either)."""
    return str(conn.scope.get("method", "WEBSOCKET"))


async def _closed_socket(conn: Request, code: int, reason: str) -> bool:
    """Close ``conn`` with ``code`` when it is a WebSocket (a problem+json body has nowhere to go there:
    before this, the handler failed on the socket and the connection dropped without a close frame)."""
    if not isinstance(conn, WebSocket):
        return False
    with contextlib.suppress(Exception):  # already closed, or the client went
        await conn.close(code, reason)
    return True
