"""The App API in tests: the embedded stack (``gpurelay dev``) with a priced lap_compare and the session echo
workload, scoped tokens minted through ``POST /v1/tokens``, and clients that send them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import yaml
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue

from contracts.ids import tenant_key_filter
from contracts.job_record import JobRecord
from contracts.record_repair import read_record
from contracts.streams import KV_JOBS
from contracts.subjects import Namespace
from services.cli.dev import DEV_TENANT, DevStack
from services.common.auth.apikeys import ApiKeyStore
from services.common.nats.kv_watch import latest_record
from tests.support.lap import lap_positions, lap_speeds, scrolling_video
from tests.support.nats import connect_env

ROOT = Path(__file__).resolve().parents[2]
ECHO = {"backend": "local", "local": "bench.harness.session_echo:run", "timeout_s": 120, "concurrency": 2}


def routes_yaml() -> str:
    """The deployment's dev route table with lap_compare priced 3.6 USD per GPU-hour on a T4 (0.001 per
    GPU-second, counted on the local pool, one attempt) and the session kinds on the echo workload."""
    table = yaml.safe_load((ROOT / "deploy" / "routes.yaml").read_text())
    lap = table["profiles"]["dev"]["lap_compare"] | {"gpus": ["T4"], "price_per_gpu_hour": 3.6}
    sessions = {kind: ECHO | {"function": kind, "retries": {"max_attempts": 1}} for kind in ("splat", "vlm")}
    table["profiles"]["dev"] = {"lap_compare": lap | {"retries": {"max_attempts": 1}}, **sessions}
    return str(yaml.safe_dump(table))


TIMEOUT = httpx.Timeout(30.0)


@dataclass
class AppStack:
    """The running stack: its URL, the dev tenant's key and a client sending it, and NATS."""

    url: str
    key: str
    api: httpx.AsyncClient
    nc: NatsClient
    jobs: KeyValue
    """KV ``jobs``, opened once (200 waits opening it each at once timed out a stream info on CI)."""

    @property
    def ns(self) -> Namespace:
        """``gpurelay dev`` runs with no namespace."""
        return Namespace("")

    async def mint(self, scopes: list[str], **fields: Any) -> str:
        """A scoped token minted with the dev key (``POST /v1/tokens``)."""
        response = await self.api.post("/v1/tokens", json={"scopes": scopes, **fields})
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def client(self, credential: str | None) -> httpx.AsyncClient:
        """A client of the stack sending ``credential`` as Bearer (none: anonymous)."""
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=TIMEOUT)

    async def new_key(self, tenant: str) -> tuple[str, str]:
        """A fresh API key of ``tenant``: its id and its plaintext."""
        keys = ApiKeyStore(await self.nc.jetstream().key_value(self.ns.bucket("apikeys")))
        record, key = await keys.create(tenant)
        return record.key_id, key


@contextlib.asynccontextmanager
async def app_stack(folder: Path, env: Any) -> AsyncIterator[AppStack]:
    """The embedded stack over ``folder`` (``env``: a MonkeyPatch the route table is set with)."""
    table = folder / "routes.yaml"
    table.write_text(routes_yaml())
    env.setenv("GPURELAY_ROUTE_TABLE", str(table))
    dev = DevStack(data_dir=folder / "data", port=0)
    try:
        values = await dev.start()
        nc = await connect_env(values, max_reconnect_attempts=0)  # as the operator
        headers = {"Authorization": f"Bearer {values['GPURELAY_API_KEY']}"}
        try:
            async with httpx.AsyncClient(base_url=values["GPURELAY_URL"], headers=headers, timeout=TIMEOUT) as api:
                jobs = await nc.jetstream().key_value(Namespace("").bucket(KV_JOBS))
                yield AppStack(values["GPURELAY_URL"], values["GPURELAY_API_KEY"], api, nc, jobs)
        finally:
            await nc.close()
    finally:
        await dev.stop()


def jpeg() -> bytes:
    """A small real JPEG frame."""
    ok, data = cv2.imencode(".jpg", np.full((48, 64, 3), 120, dtype=np.uint8))
    assert ok
    return bytes(data)


async def upload_file(client: httpx.AsyncClient, data: bytes, content_type: str = "video/mp4") -> str:
    """Declare, PUT and complete an upload through ``client``; its id."""
    declared = await client.post(
        "/v1/uploads", json={"filename": "lap.mp4", "content_type": content_type, "size": len(data)}
    )
    assert declared.status_code == 201, declared.text
    signed = declared.json()
    async with httpx.AsyncClient(timeout=TIMEOUT) as storage:
        put = await storage.request(signed["method"], signed["url"], headers=signed["headers"], content=data)
    assert put.status_code < 300, put.text
    done = await client.post(f"/v1/uploads/{signed['id']}/complete")
    assert done.status_code == 200, done.text
    return str(signed["id"])


def lap_spec(upload_id: str, **fields: Any) -> dict[str, Any]:
    """A lap_compare job on one upload."""
    return {"kind": "lap_compare", "inputs": {"video": {"upload_id": upload_id}}, **fields}


async def status_of(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A response whose body is read only when it is not an event stream (an SSE answer is left open)."""
    async with client.stream(method, url, **kwargs) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            await response.aread()
        return response


async def record_when(
    stack: AppStack, job_id: str, done: Callable[[JobRecord], bool], timeout_s: float = 30.0
) -> JobRecord:
    """The dev tenant's job record once ``done(record)`` holds (a KV watch, no polling)."""
    record = await latest_record(stack.jobs, DEV_TENANT, job_id, done, timeout_s)
    assert record is not None, f"no record of {job_id} within {timeout_s} s"
    assert done(record), f"{job_id} never got there within {timeout_s} s: {record.status}"
    return record


async def records_when(
    stack: AppStack, job_ids: list[str], done: Callable[[JobRecord], bool], timeout_s: float = 60.0
) -> list[JobRecord]:
    """Each job's record once ``done(record)`` held for it, in ``job_ids``' order: one KV watch of the dev
    tenant's records, not one a job (200 watches made at once timed out on a loaded machine)."""
    remaining = set(job_ids)
    reached: dict[str, JobRecord] = {}
    last: dict[str, JobRecord] = {}
    watcher = await stack.jobs.watch(tenant_key_filter(DEV_TENANT))
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                async for entry in watcher:
                    job_id = entry.key.partition(".")[2] if entry is not None and entry.value else ""
                    if job_id in remaining:
                        last[job_id] = record = read_record(entry.value)
                        if done(record):
                            remaining.discard(job_id)
                            reached[job_id] = record
                            if not remaining:
                                break
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    late = sorted(remaining)
    assert not late, f"{len(late)} of {len(job_ids)} not there within {timeout_s} s: {late[0]} {last.get(late[0])}"
    return [reached[job_id] for job_id in job_ids]


def small_video(folder: Path) -> bytes:
    """A short synthetic lap video (OpenCV)."""
    return scrolling_video(folder / "lap.mp4", lap_positions(lap_speeds(12))).read_bytes()
