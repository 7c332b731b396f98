"""The Modal app: every routed GPU function, its GPU list and timeout read from the route table.

Deploy with ``modal deploy modal_workers/app.py``. GPU preference lists and timeouts come from
``deploy/routes.yaml`` (profile ``GPURELAY_MODAL_PROFILE``, default ``prod``), the same table the
dispatcher routes by, so a GPU choice is written once. Images are pinned; storage credentials come
from the Modal secret ``gpurelay-storage``; heavy libraries are imported inside the functions, so
this module imports without torch or network. Each function runs one
:class:`~modal_workers.runtime.RunRequest` through the runtime, posting its events to the
gateway's ingest route with the job-scoped token, and returns the run's outcome.
"""

from __future__ import annotations

import os
from typing import Any

import modal

from contracts.envelope import EventEnvelope
from services.dispatcher.routes import DEFAULT_ROUTES, Route, load_route_table

APP_NAME = "gpurelay"
PROFILE = os.environ.get("GPURELAY_MODAL_PROFILE", "prod")
ROUTES: dict[str, Route] = {str(k): r for k, r in load_route_table(DEFAULT_ROUTES).profile(PROFILE).items()}

BASE_PACKAGES = (
    "pydantic==2.11.7",
    "pyyaml==6.0.2",
    "httpx==0.28.1",
    "aioboto3==15.0.0",
    "uuid-utils==0.11.0",
)
base_image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*BASE_PACKAGES)
    .add_local_file(str(DEFAULT_ROUTES), "/root/deploy/routes.yaml", copy=True)
    .add_local_python_source("contracts", "services", "modal_workers", copy=True)
)
video_image = base_image.apt_install("ffmpeg").pip_install(
    "opencv-python-headless==4.10.0.84", "numpy==2.1.3"
)
torch_image = video_image.pip_install("torch==2.5.1", "ultralytics==8.3.40")
storage_secret = modal.Secret.from_name("gpurelay-storage")
app = modal.App(APP_NAME)

OPTIONS: dict[str, dict[str, Any]] = {}
"""What each Modal function was declared with (name → gpu, timeout), for the import-level test."""


def options(kind: str, function: str) -> dict[str, Any]:
    """``gpu`` and ``timeout`` of a routed function (or stage) from the route table."""
    route = ROUTES[kind]
    stage = next((s for s in route.steps() if s.function == function), route.steps()[0])
    gpus = list(route.stage_gpus(stage))
    declared = {"gpu": gpus or None, "timeout": int(route.stage_timeout_s(stage))}
    OPTIONS[f"{route.cls}.{function}" if route.cls else function] = declared
    return declared


def run_request(
    workload: str, request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]
) -> dict[str, Any]:
    """Run ``workload`` (module:function) for ``request`` in this container; the outcome as JSON."""
    from modal_workers.runtime import RunRequest, WorkerRuntime
    from services.common.config import BaseServiceSettings
    from services.common.storage import make_storage
    from services.dispatcher.local_worker import import_ref

    settings = BaseServiceSettings(
        profile="dev",
        storage_backend=storage.get("backend", "s3"),
        storage_bucket=storage.get("bucket", "gpurelay"),
        storage_prefix=storage.get("prefix", ""),
        s3_endpoint_url=storage.get("endpoint_url"),
        s3_region=storage.get("region", "us-east-1"),
    )
    runtime = WorkerRuntime(
        lambda: IngestSink.create(ingest["url"], ingest["token"]), lambda: make_storage(settings)
    )
    try:
        outcome = runtime.run(import_ref(workload), RunRequest.model_validate(request))
    finally:
        runtime.close()
    return outcome.model_dump(mode="json")


class IngestSink:
    """Events to the gateway's ingest route with the job-scoped token (workers off the NATS network)."""

    def __init__(self, url: str, token: str) -> None:
        import httpx

        self.url = url
        self._http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)

    @classmethod
    async def create(cls, url: str, token: str) -> IngestSink:
        """A sink posting to ``url``."""
        return cls(url, token)

    async def send(self, subject_event: str, event: EventEnvelope) -> None:
        """POST one event; the gateway publishes it with ``Nats-Msg-Id`` = its id."""
        response = await self._http.post(
            self.url, json={"events": [event.model_dump(mode="json", exclude_none=True)]}
        )
        response.raise_for_status()

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()


@app.function(image=video_image, secrets=[storage_secret], **options("lap_compare", "lap_compare"))
def lap_compare(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """Optical flow on one or two lap videos."""
    return run_request("modal_workers.lap_compare:run", request, ingest, storage)


@app.function(image=torch_image, secrets=[storage_secret], **options("pose", "pose"))
def pose(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """YOLO pose on a sports video."""
    return run_request("modal_workers.pose:run", request, ingest, storage)


@app.function(image=video_image, secrets=[storage_secret], **options("nerf", "nerf_colmap"))
def nerf_colmap(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """NeRF stage 1: camera poses with COLMAP."""
    return run_request("modal_workers.nerf:colmap", request, ingest, storage)


@app.function(image=torch_image, secrets=[storage_secret], **options("nerf", "nerf_train"))
def nerf_train(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """NeRF stage 2: training."""
    return run_request("modal_workers.nerf:train", request, ingest, storage)


@app.function(image=torch_image, secrets=[storage_secret], **options("nerf", "nerf_render"))
def nerf_render(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """NeRF stage 3: turntable render."""
    return run_request("modal_workers.nerf:render", request, ingest, storage)


@app.cls(image=torch_image, secrets=[storage_secret], **options("splat", "run"))
class SplatSession:
    """A live Gaussian-splat session (state kept in the container)."""

    @modal.method()
    def run(self, request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
        """Train from streamed frames until stopped."""
        return run_request("modal_workers.splat:run", request, ingest, storage)


@app.cls(image=torch_image, secrets=[storage_secret], **options("vlm", "run"))
class VlmSession:
    """A stateful VLM session; the model is loaded once per container."""

    @modal.method()
    def run(self, request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
        """Chunked inference on streamed frames until stopped."""
        return run_request("modal_workers.vlm:run", request, ingest, storage)
