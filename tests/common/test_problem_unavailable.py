"""NATS away for a moment is a 503 problem with Retry-After, never a 500: clients retry it; publishers
retry only what a retry can cure."""

from __future__ import annotations

import httpx
import nats.errors
import nats.js.errors
import pytest
from fastapi import FastAPI

from services.common.http.problem import PROBLEM_JSON, ProblemError, install_error_handlers
from services.common.nats.connection import JETSTREAM_UNAVAILABLE_CODE, is_unavailable
from services.common.webhook_queue import QUEUE_FULL_CODE


@pytest.mark.parametrize(
    "error",
    [nats.errors.TimeoutError(), nats.errors.NoRespondersError(), nats.js.errors.NoStreamResponseError()],
    ids=["timeout", "no-responders", "no-stream-response"],
)
async def test_nats_unavailable_is_a_503(error: Exception) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/read")
    async def read() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/read")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.headers["Retry-After"] == "1"
    assert response.json()["status"] == 503


def test_only_jetstreams_temporary_503_is_unavailable() -> None:
    electing = nats.js.errors.ServiceUnavailableError(code=503, err_code=JETSTREAM_UNAVAILABLE_CODE)
    full = nats.js.errors.ServiceUnavailableError(code=503, err_code=QUEUE_FULL_CODE)  # a refusal: final
    assert is_unavailable(electing)
    assert not is_unavailable(full)
    assert is_unavailable(nats.js.errors.NoStreamResponseError())
    assert not is_unavailable(nats.js.errors.BadRequestError(code=400))


class CountingWatch:
    """What the 503 handler tells of a failed request (one of the app's ``nats_watches``)."""

    def __init__(self) -> None:
        self.failures = 0

    def failed(self) -> None:
        self.failures += 1


async def test_a_503_for_want_of_nats_tells_each_of_the_apps_watches_and_other_errors_do_not() -> None:
    app = FastAPI()
    install_error_handlers(app)
    watches = CountingWatch(), CountingWatch()  # the gateway's own connection and its ingest one
    app.state.nats_watches = watches

    @app.get("/away")
    async def away() -> None:
        raise nats.errors.TimeoutError()

    @app.get("/not-taken")
    async def not_taken() -> None:  # a route's own 503 (as when a publish it awaited timed out)
        raise ProblemError(503, "The event could not be recorded (TimeoutError); retry.")

    @app.get("/refused")
    async def refused() -> None:
        raise nats.js.errors.BadRequestError(code=400)

    @app.get("/conflict")
    async def conflict() -> None:
        raise ProblemError(409, "Already canceled.")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/away")).status_code == 503
        assert (await http.get("/not-taken")).status_code == 503
        assert (await http.get("/refused")).status_code == 500
        assert (await http.get("/conflict")).status_code == 409
    assert [watch.failures for watch in watches] == [2, 2]
