"""The Modal backend, through a thin seam (:class:`ModalClient`) of the four calls it uses.

``modal.Function.from_name(app, fn).spawn(...)`` for batch kinds and stages,
``modal.Cls.from_name(app, cls)().method.spawn(...)`` for session kinds,
``modal.FunctionCall.from_id(id).get(...)`` for the outcome and ``.cancel()`` to stop it.
:class:`SdkModalClient` makes those calls (imported lazily; Modal cannot be reached from tests),
and a recording fake stands in for it in the tests.

The worker gets the :class:`~contracts.runs.RunRequest`, its job-scoped ingest token (it
posts its events to the gateway's ingest route) and the storage settings (credentials come from a
Modal secret, never from here).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from contracts.route_table import Route, Stage
from contracts.runs import Outcome, RunRequest
from services.common.auth.ingest_tokens import mint_ingest_token
from services.dispatcher.running.backends import Announce, BackendUnavailableError, Launch, observed
from services.dispatcher.settings import DispatcherSettings

RESULT_POLL_S = 55.0


class ModalClient(Protocol):
    """The Modal calls the dispatcher makes."""

    async def spawn(self, app: str, function: str, kwargs: dict[str, Any]) -> str:
        """``Function.from_name(app, function).spawn(**kwargs)``; the call id."""

    async def spawn_method(self, app: str, cls: str, method: str, kwargs: dict[str, Any]) -> str:
        """``Cls.from_name(app, cls)().<method>.spawn(**kwargs)``; the call id."""

    async def result(self, call_id: str, timeout_s: float) -> Any:
        """``FunctionCall.from_id(call_id).get(timeout=...)``; raises TimeoutError while running."""

    async def cancel(self, call_id: str) -> None:
        """``FunctionCall.from_id(call_id).cancel()``."""


class SdkModalClient:
    """:class:`ModalClient` on the Modal SDK (its async ``.aio`` interface)."""

    def __init__(self, environment: str | None = None) -> None:
        self.environment = environment

    async def spawn(self, app: str, function: str, kwargs: dict[str, Any]) -> str:
        import modal

        fn = modal.Function.from_name(app, function, environment_name=self.environment)
        call = await fn.spawn.aio(**kwargs)
        return str(call.object_id)

    async def spawn_method(self, app: str, cls: str, method: str, kwargs: dict[str, Any]) -> str:
        import modal

        instance = modal.Cls.from_name(app, cls, environment_name=self.environment)()
        call = await getattr(instance, method).spawn.aio(**kwargs)
        return str(call.object_id)

    async def result(self, call_id: str, timeout_s: float) -> Any:
        import modal

        return await modal.FunctionCall.from_id(call_id).get.aio(timeout=timeout_s)

    async def cancel(self, call_id: str) -> None:
        import modal

        await modal.FunctionCall.from_id(call_id).cancel.aio()


class ModalBackend:
    """Runs attempts as Modal function calls."""

    name = "modal"

    def __init__(self, settings: DispatcherSettings, client: ModalClient | None = None) -> None:
        self.settings = settings
        self.client: ModalClient = client or SdkModalClient(settings.modal_environment)

    async def reserve(self) -> None:
        """Modal scales itself: nothing to wait for."""

    def release(self, reservation: Any) -> None:
        """Nothing was reserved."""

    def worker_kwargs(self, request: RunRequest, timeout_s: float) -> dict[str, Any]:
        """What the Modal function receives: the request, its ingest token and storage settings."""
        s = self.settings
        token = mint_ingest_token(
            s.ingest_token_secret.get_secret_value().encode(),
            request.tenant,
            request.job_id,
            request.attempt,
            ttl_s=timeout_s + 3600,
        )
        return {
            "request": request.model_dump(mode="json"),
            "ingest": {"url": f"{s.url}/v1/internal/jobs/{request.job_id}/events", "token": token},
            "storage": {
                "backend": s.storage_backend,
                "bucket": s.storage_bucket,
                "prefix": s.storage_prefix,
                "endpoint_url": s.s3_endpoint_url,
                "region": s.s3_region,
            },
        }

    async def launch(
        self, reservation: Any, request: RunRequest, route: Route, stage: Stage, announce: Announce
    ) -> Launch:
        """Spawn the call, announce it, and follow its result in a task."""
        timeout_s = route.stage_timeout_s(stage)
        kwargs = self.worker_kwargs(request, timeout_s)
        try:
            if route.cls is not None:
                call_id = await self.client.spawn_method(route.app, route.cls, stage.function, kwargs)
            else:
                call_id = await self.client.spawn(route.app, stage.function, kwargs)
        except Exception as exc:
            raise BackendUnavailableError(f"modal spawn failed: {exc}") from exc
        gpus = route.stage_gpus(stage)
        try:
            await announce(call_id, gpus[0] if gpus else None)
        except BaseException:  # not announced (another replica launched the attempt first): stop the call
            with contextlib.suppress(Exception):
                await self.client.cancel(call_id)
            raise

        async def follow() -> Outcome:
            while True:
                try:
                    value = await self.client.result(call_id, RESULT_POLL_S)
                except TimeoutError:
                    await asyncio.sleep(0)
                    continue
                return Outcome.model_validate(value)

        async def cancel() -> None:
            await self.client.cancel(call_id)

        return Launch(call_id, observed(asyncio.create_task(follow())), cancel)

    async def cancel_call(self, call_id: str, job_id: str = "", attempt: int = 0) -> None:
        """Cancel a call started by another replica (a Modal call id names one run: no check needed)."""
        await self.client.cancel(call_id)
