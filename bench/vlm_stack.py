"""The live part of ``bench/vlm.py``: a stack whose local pool runs the real vlm workload, and its client.

Four processes, as deployed: nats-server (:class:`EmbeddedNats`), the gateway (``python -m
services.cli.main gateway``, :func:`bench.session_worker.gateway`), the dispatcher (``python -m
services.cli.main dispatcher``, :func:`dispatcher`) whose local pool of one process runs
``modal_workers.vlm:run`` with the tiny Gemma 3 as the deployment's default (``GPURELAY_VLM_MODEL``,
``HF_HUB_OFFLINE=1``), and this one, the client (:class:`VlmClient`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.session_worker import ROOT
from services.common.nats.server.ports import free_port

ROUTES = """
profiles:
  dev:
    vlm: {backend: local, local: "modal_workers.vlm:run", function: vlm, timeout_s: 900, concurrency: 1,
          retries: {max_attempts: 1}}
  prod: {}
"""
READY_TIMEOUT_S = 120.0
TERMINAL = ("job.succeeded", "job.failed", "job.canceled")


def write_routes(folder: Path) -> Path:
    """The route table of this stack in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    routes = folder / "routes.yaml"
    routes.write_text(ROUTES)
    return routes


@contextlib.asynccontextmanager
async def dispatcher(nats_url: str, namespace: str, data_dir: Path, model_dir: Path) -> AsyncIterator[int]:
    """The dispatcher in its own process (its pool: one vlm worker on ``model_dir``); yields its pid."""
    routes = await asyncio.to_thread(write_routes, data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
    env.update(
        PYTHONPATH=str(ROOT), GPURELAY_PROFILE="test", GPURELAY_NATS_URL=nats_url, GPURELAY_NAMESPACE=namespace,
        GPURELAY_DATA_DIR=str(data_dir), GPURELAY_PORT=str(free_port()), GPURELAY_ROUTE_TABLE=str(routes),
        GPURELAY_ROUTE_PROFILE="dev", GPURELAY_LOCAL_POOL_SIZE="1", GPURELAY_LOCAL_WORKERS_DIE_WITH_DISPATCHER="true",
        GPURELAY_LOG_LEVEL="WARNING", GPURELAY_VLM_MODEL=str(model_dir), HF_HUB_OFFLINE="1",
    )  # fmt: skip
    command = [sys.executable, "-m", "services.cli.main", "dispatcher"]
    process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL)
    try:
        yield process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


class Watcher:
    """A session socket that only reads: the worker's latest figures, every result, the terminal event."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.metrics: dict[str, Any] = {}
        self.messages: list[str] = []
        self.results: list[dict[str, Any]] = []
        self.terminal: dict[str, Any] | None = None
        self._changed = asyncio.Event()

    async def read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message.get("type") != "event":
                continue
            event = message["event"]
            if event["type"] == "job.progress":
                self.metrics = event["data"].get("metrics") or {}
                self.messages.append(event["data"].get("message") or "")
            elif event["type"] == "session.result":
                self.results.append(event["data"])
            elif event["type"] in TERMINAL:
                self.terminal = event
            self._changed.set()
            if self.terminal is not None:
                return

    async def until(self, done: Callable[[Watcher], bool], within_s: float = READY_TIMEOUT_S) -> None:
        """Wait until ``done(self)`` holds (checked on every event); TimeoutError after ``within_s``."""
        async with asyncio.timeout(within_s):
            while not done(self):
                self._changed.clear()
                await self._changed.wait()


class VlmClient:
    """vlm sessions on the gateway at ``port``: start, watch, stop, cancel."""

    def __init__(self, port: int, key: str) -> None:
        self.base, self.key = f"http://127.0.0.1:{port}", key
        self.http = httpx.AsyncClient(base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    async def start(self, **params: Any) -> str:
        """A new vlm session's id."""
        created = await self.http.post("/v1/sessions", json={"kind": "vlm", "params": params})
        if created.status_code != 201:
            raise RuntimeError(f"POST /v1/sessions answered {created.status_code}: {created.text[:300]}")
        session_id: str = created.json()["id"]
        return session_id

    @contextlib.asynccontextmanager
    async def watch(self, session_id: str) -> AsyncIterator[Watcher]:
        """A :class:`Watcher` on the session's socket for the block."""
        url = f"ws://127.0.0.1:{self.base.rsplit(':', 1)[1]}/v1/sessions/{session_id}/stream"
        headers = {"Authorization": f"Bearer {self.key}"}
        async with connect(url, additional_headers=headers, compression=None, proxy=None) as ws:
            watcher = Watcher(ws)
            reader = asyncio.create_task(watcher.read())
            try:
                yield watcher
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def control(self, session_id: str, action: str) -> None:
        """``stop`` or ``reset`` (sessions route) or ``cancel`` (jobs route)."""
        where = "jobs" if action == "cancel" else "sessions"
        answer = await self.http.post(f"/v1/{where}/{session_id}/{action}")
        if answer.status_code != 202:
            raise RuntimeError(f"{action} answered {answer.status_code}: {answer.text[:300]}")

    async def aclose(self) -> None:
        await self.http.aclose()
