"""A path asked with a method it lacks is a 405 problem whose ``Allow`` names every method the path
has: Starlette names those of the first route matching the path only (``PUT /jobs``: ``POST``)."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI

from services.common.http.problem import PROBLEM_JSON, install_error_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    router = APIRouter()

    @router.post("/jobs")
    async def create() -> None: ...

    @router.get("/jobs")
    async def listing() -> None: ...

    @router.get("/jobs/{job_id}")
    async def read(job_id: str) -> None: ...

    @router.delete("/jobs/{job_id}")
    async def remove(job_id: str) -> None: ...

    app.include_router(router)
    return app


async def test_allow_names_every_method_of_the_path() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        jobs = await http.put("/jobs")
        one = await http.patch("/jobs/job_1")
        assert (await http.put("/nothing")).status_code == 404
    assert jobs.status_code == 405
    assert jobs.headers["content-type"].startswith(PROBLEM_JSON)
    assert jobs.headers["allow"] == "GET, HEAD, POST"
    assert (one.status_code, one.headers["allow"]) == (405, "DELETE, GET, HEAD")


async def test_an_app_without_a_document_still_answers_405_with_starlettes_allow() -> None:
    app = _app()

    def broken() -> dict[str, object]:
        raise RuntimeError("no schema")

    app.openapi = broken  # type: ignore[method-assign]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        jobs = await http.put("/jobs")
    assert (jobs.status_code, jobs.headers["allow"]) == (405, "POST")  # not a 500
