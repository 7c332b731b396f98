"""The Modal backend through its seam (a recording fake), and modal_workers/app.py at import level."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.job_parts import JobStatus
from contracts.route_table import DEFAULT_ROUTES, Route, load_route_table
from contracts.runs import Outcome, RunRequest
from contracts.subjects import Namespace, Subjects
from services.common.auth.ingest_tokens import verify_ingest_token
from services.dispatcher.running.modal_backend import ModalBackend
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings
from tests.support.dispatcher import INGEST_SECRET, POSE, dispatcher_settings, submit, wait_record


class FakeModal:
    """Records spawn / spawn_method / result / cancel; results come from ``outcomes``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.outcomes: dict[str, asyncio.Future[Any]] = {}

    def _new(self, what: tuple[str, Any]) -> str:
        self.calls.append(what)
        call_id = f"fc-{len(self.outcomes) + 1}"
        self.outcomes[call_id] = asyncio.get_running_loop().create_future()
        return call_id

    async def spawn(self, app: str, function: str, kwargs: dict[str, Any]) -> str:
        return self._new(("spawn", (app, function, kwargs)))

    async def spawn_method(self, app: str, cls: str, method: str, kwargs: dict[str, Any]) -> str:
        return self._new(("spawn_method", (app, cls, method, kwargs)))

    async def result(self, call_id: str, timeout_s: float) -> Any:
        return await self.outcomes[call_id]

    async def cancel(self, call_id: str) -> None:
        self.calls.append(("cancel", call_id))
        if call_id in self.outcomes and not self.outcomes[call_id].done():
            self.outcomes[call_id].set_exception(RuntimeError("cancelled"))


def modal_route(**overrides: Any) -> Route:
    return Route(
        **{
            "backend": "modal",
            "app": "gpurelay",
            "function": "pose",
            "gpus": ("T4", "A10G"),
            "timeout_s": 60.0,
        }
        | overrides
    )


async def test_spawn_hands_the_worker_its_ingest_token_and_storage_settings(tmp_path: Path) -> None:
    settings = dispatcher_settings(
        "nats://unused", Namespace(), tmp_path, storage_bucket="media", url="https://api.example"
    )
    fake = FakeModal()
    backend = ModalBackend(settings, fake)
    route = modal_route()
    request = RunRequest(tenant="acme", job_id="job_1", kind="pose", attempt=2, spec=POSE, function="pose")
    announced: list[tuple[str, str | None]] = []

    async def announce(call_id: str, gpu: str | None) -> int:
        announced.append((call_id, gpu))
        return 0  # Modal's launch does not use the dispatch's sequence

    launch = await backend.launch(None, request, route, route.steps()[0], announce)
    kind, (app, function, kwargs) = fake.calls[0]
    assert (kind, app, function) == ("spawn", "gpurelay", "pose")
    assert announced == [("fc-1", "T4")]
    claims = verify_ingest_token(INGEST_SECRET.encode(), kwargs["ingest"]["token"])
    assert (claims.tenant, claims.job_id, claims.attempt) == ("acme", "job_1", 2)
    assert kwargs["ingest"]["url"] == "https://api.example/v1/internal/jobs/job_1/events"
    assert kwargs["storage"]["bucket"] == "media"
    assert "secret" not in str(kwargs["storage"]).lower()
    assert RunRequest.model_validate(kwargs["request"]) == request
    fake.outcomes["fc-1"].set_result(Outcome(status="succeeded", result={"n": 1}).model_dump(mode="json"))
    assert (await launch.outcome).result == {"n": 1}
    session = await backend.launch(
        None,
        request,
        modal_route(cls="VlmSession", function="run"),
        Route.model_validate({"backend": "modal", "function": "run"}).steps()[0],
        announce,
    )
    assert fake.calls[1][0] == "spawn_method"
    assert fake.calls[1][1][1:3] == ("VlmSession", "run")
    await session.cancel()
    with pytest.raises(RuntimeError):
        await session.outcome
    await backend.cancel_call("fc-9")
    assert fake.calls[2:] == [("cancel", "fc-2"), ("cancel", "fc-9")]


async def test_a_modal_job_is_dispatched_canceled_through_function_call_cancel(
    settings: DispatcherSettings,
    declared: object,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
) -> None:
    from tests.support.dispatcher import request_cancel

    fake = FakeModal()
    dispatcher = Dispatcher(settings, routes={"pose": modal_route()}, modal_client=fake)
    await dispatcher.start()
    try:
        job = await submit(js, jobs_kv, subjects, POSE)
        record = await wait_record(jobs_kv, job, lambda r: r.status is JobStatus.DISPATCHED)
        assert (record.backend, record.call_id, record.cost.gpu) == ("modal", "fc-1", "T4")
        await request_cancel(js, subjects, job)
        record = await wait_record(jobs_kv, job, lambda r: r.terminal)
        assert record.status is JobStatus.CANCELED
        assert ("cancel", "fc-1") in fake.calls
    finally:
        await dispatcher.stop()


def test_the_modal_app_declares_every_routed_function_with_the_tables_gpus_and_timeout() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from modal_workers import app as modal_app

        functions = modal_app.app.registered_functions
    routes = load_route_table(DEFAULT_ROUTES).profile("prod")
    expected = 0
    for route in routes.values():
        assert route.backend == "modal"
        for stage in route.steps():
            name = f"{route.cls}.{stage.function}" if route.cls else stage.function
            registered = functions[f"{route.cls}.*" if route.cls else stage.function]
            gpus = list(route.stage_gpus(stage)) or None  # none: a CPU function (nerf's archive check)
            assert registered._spec_.gpus == gpus, name
            assert modal_app.OPTIONS[name] == {
                "gpu": gpus,
                "timeout": int(route.stage_timeout_s(stage)),
            }
            expected += 1
    assert len(modal_app.OPTIONS) == expected
