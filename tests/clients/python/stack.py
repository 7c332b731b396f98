"""The embedded stack (:class:`~services.cli.dev.DevStack`) on an event loop of its own thread, so the
blocking client's tests can call it from the test's thread (and the asyncio client's from their loop).

The routes table sends ``lap_compare`` to the local pool with a single attempt (a failing job fails at
once) and both session kinds to the echo workload (``bench.harness.session_echo:run``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from contracts.streams import KV_APIKEYS
from contracts.subjects import NO_NAMESPACE
from services.cli.dev import DevStack
from services.common.auth.apikeys import ApiKeyStore
from tests.support.nats import connect_env

T = TypeVar("T")
ROUTES = """
profiles:
  dev:
    lap_compare:
      backend: local
      local: modal_workers.lap_compare:run
      function: lap_compare
      gpus: []
      timeout_s: 120
      retries: {max_attempts: 1}
      concurrency: 2
    splat: &echo
      backend: local
      local: bench.harness.session_echo:run
      function: splat
      timeout_s: 120
      retries: {max_attempts: 1}
      concurrency: 2
    vlm: *echo
  prod: {}
"""


class ThreadedStack:
    """A started :class:`DevStack` whose loop runs in a thread; :meth:`call` runs a coroutine there."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.loop = asyncio.new_event_loop()
        self.dev = DevStack(data_dir=data_dir, port=0)
        self.env: dict[str, str] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, name="dev-stack", daemon=True)

    def start(self) -> dict[str, str]:
        """Start the loop's thread and the stack in it; the stack's ``dev.env`` values."""
        self._thread.start()
        self.env = self.call(self.dev.start(), timeout_s=120)
        return self.env

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        """Run ``coro`` on the stack's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        """Stop the stack, then the loop and its thread."""
        try:
            self.call(self.dev.stop(), timeout_s=60)
            self.call(_cancel_the_rest())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()

    @property
    def url(self) -> str:
        """The gateway's URL."""
        return self.env["GPURELAY_URL"]

    @property
    def api_key(self) -> str:
        """The dev tenant's key."""
        return self.env["GPURELAY_API_KEY"]

    def new_key(self, tenant: str) -> str:
        """A fresh API key of ``tenant`` (made in the stack's key store)."""

        async def create() -> str:
            nc = await connect_env(self.env, connect_timeout=5)
            try:
                keys = ApiKeyStore(await nc.jetstream().key_value(NO_NAMESPACE.bucket(KV_APIKEYS)))
                return (await keys.create(tenant))[1]
            finally:
                await nc.close()

        return self.call(create())

    def blob(self, name_suffix: str, job_id: str) -> Path:
        """The stored file of a job's artifact (local storage), to tamper with in a test."""
        found = [p for p in (self.data_dir / "blobs" / "objects").rglob("*") if p.is_file() and job_id in str(p)]
        matches = [p for p in found if str(p).endswith(name_suffix)]
        assert len(matches) == 1, found
        return matches[0]


async def _cancel_the_rest() -> None:
    """Cancel what the stopped stack left on its loop (client-side tasks of its NATS connections)."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
