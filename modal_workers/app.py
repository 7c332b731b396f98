"""The Modal app: every routed GPU function, its GPU list and timeout read from the route table.

Deploy with ``modal deploy modal_workers/app.py`` (see docs/deploy-modal.md). GPU preference lists
and timeouts come from ``deploy/routes.yaml`` (profile ``GPURELAY_MODAL_PROFILE``, default
``prod``), the same table the dispatcher routes by, so a GPU choice is written once. Images are
``debian_slim`` plus each workload's packages, pinned to the versions the project is tested with
(the vlm image also bakes the deployment's VLMs, :func:`vlm_hub_models`, into its Hugging Face
cache at build time with the ``HF_TOKEN`` of the Modal secret ``GPURELAY_VLM_HF_SECRET``, default
``huggingface``, and loads them offline);
(splat: a CUDA devel image, so gsplat's kernels are compiled when the image is built);
storage credentials come from the Modal secret ``gpurelay-storage`` (``GPURELAY_S3_ACCESS_KEY_ID``,
``GPURELAY_S3_SECRET_ACCESS_KEY``); heavy libraries are imported inside the functions, so this
module imports without torch, OpenCV or a network.

Each function runs one :class:`~contracts.runs.RunRequest` through the runtime, posting
its events to the gateway's ingest route with the job-scoped token
(:class:`~modal_workers.runtime.sinks.IngestSink`), and returns the run's outcome as JSON. The
session classes load their model once per container in ``@modal.enter`` (the workload module's
optional ``warm()`` hook); batch functions keep what they load in module-level caches, which a
container also keeps between inputs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from typing import Any

import modal

from contracts.route_table import DEFAULT_ROUTES, Route, load_route_table
from contracts.specs.session_params import VLM_DEFAULT_MODEL

APP_NAME = "gpurelay"
PROFILE = os.environ.get("GPURELAY_MODAL_PROFILE", "prod")
ROUTES: dict[str, Route] = {str(k): r for k, r in load_route_table(DEFAULT_ROUTES).profile(PROFILE).items()}

BASE_PACKAGES = (  # what contracts/, services/common and the runtime import (versions as in the venv)
    "pydantic==2.14.4",
    "pydantic-settings==2.16.3",
    "pyyaml==6.0.4",
    "httpx==0.28.1",
    "aioboto3==15.5.0",
    "uuid-utils==1.2.0",
    "rich==15.0.0",
    "nats-py==2.16.0",  # services.common.nats.publish (the runtime's sinks)
    "websockets==17.4",  # a session's feed from the gateway
    "prometheus-client==0.26.0",
    "opentelemetry-api==1.45.2",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
)
VIDEO_PACKAGES = ("opencv-python-headless==5.0.0.93", "numpy==2.4.6")
TORCH_PACKAGES = ("torch==2.14.1", "torchvision==0.29.1", "ultralytics==8.4.190")
COLMAP_PACKAGES = ("pycolmap==4.2.1",)  # the PyPI wheel has no CUDA: SIFT on the CPU unless a CUDA build is swapped in
VLM_PACKAGES = (  # the vlm workload: transformers' Gemma 3 on torch, PIL decoding, regex alerts
    "torch==2.14.1",
    "torchvision==0.29.1",
    "transformers==5.23.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "huggingface-hub==2.4.0",
    "pillow==13.0.0",
    "regex==2026.11.19",
    "numpy==2.4.6",
)
RECORDING_PACKAGES = (  # a session fed from a LeRobot dataset (parquet, its videos, JPEG frames)
    "av==18.1.0",
    "pyarrow==26.0.1",
    "opencv-python-headless==5.0.0.93",
)
EXPORT_PACKAGES = (  # session_export: LeRobot v3 (parquet, AV1/H.264 MP4), MCAP with Foxglove schemas, Rerun
    *RECORDING_PACKAGES,
    "mcap==1.6.0",
    "mcap-protobuf-support==0.6.0",
    "foxglove-schemas-protobuf==0.4.0",
    "protobuf==7.36.2",
    "rerun-sdk==0.41.0",
    "plyfile==1.1.5",
)
VLM_HF_HOME = "/models/hf"
"""Where the vlm image keeps the models it bakes (the Hugging Face cache, read offline at run time)."""
HF_SECRET = os.environ.get("GPURELAY_VLM_HF_SECRET", "huggingface")
"""The Modal secret holding ``HF_TOKEN``, used only while the vlm image downloads its models."""
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def vlm_hub_models(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The hub models the vlm image bakes: the default (``GPURELAY_VLM_MODEL``) and the allowed ones
    (``GPURELAY_VLM_MODELS``, a JSON list) as set when deploying. A local directory is not baked (mount
    it yourself); a malformed list is a deploy error."""
    default = environ.get("GPURELAY_VLM_MODEL", "").strip() or VLM_DEFAULT_MODEL
    allowed = json.loads(environ.get("GPURELAY_VLM_MODELS", "").strip() or "[]")
    if not isinstance(allowed, list) or not all(isinstance(name, str) for name in allowed):
        raise ValueError("GPURELAY_VLM_MODELS must be a JSON list of model names")
    names = [name for name in (default, *allowed) if _HUB_ID.fullmatch(name) and ".." not in name]
    return tuple(dict.fromkeys(names))


def _vlm_image(base: modal.Image) -> modal.Image:
    """``base`` plus the vlm packages and the baked models, loaded offline with the deployment's settings."""
    models = vlm_hub_models()
    bake = "import sys; from huggingface_hub import snapshot_download; [snapshot_download(m) for m in sys.argv[1:]]"
    command = " ".join(["python", "-c", shlex.quote(bake), *(shlex.quote(m) for m in models)])
    runtime_env = {
        "HF_HUB_OFFLINE": "1",
        "GPURELAY_VLM_MODEL": os.environ.get("GPURELAY_VLM_MODEL", "").strip() or VLM_DEFAULT_MODEL,
        "GPURELAY_VLM_MODELS": os.environ.get("GPURELAY_VLM_MODELS", "").strip() or "[]",
    }
    return (
        base.pip_install(*VLM_PACKAGES, *RECORDING_PACKAGES)
        .env({"HF_HOME": VLM_HF_HOME})
        .run_commands(command, secrets=[modal.Secret.from_name(HF_SECRET)])
        .env(runtime_env)
    )


SPLAT_PACKAGES = ("torch==2.14.1", "plyfile==1.1.5", *VIDEO_PACKAGES)
GSPLAT_PACKAGES = ("gsplat==1.5.3",)
CUDA_DEVEL_IMAGE = "nvidia/cuda:13.0.0-devel-ubuntu22.04"
"""The CUDA toolkit gsplat's kernels are compiled with at image build (torch 2.14.1's wheels are CUDA 13.0)."""
GSPLAT_ARCHS = "8.6;8.9"
"""Compute capabilities the kernels are built for: the splat route's GPUs (A10G 8.6, L40S 8.9)."""

base_image = (
    modal.Image.debian_slim(python_version="3.11").pip_install(*BASE_PACKAGES).env({"GPURELAY_MODAL_PROFILE": PROFILE})
)
video_image = base_image.apt_install("ffmpeg").pip_install(*VIDEO_PACKAGES)
torch_image = video_image.pip_install(*TORCH_PACKAGES)
vlm_image = _vlm_image(base_image)
# gsplat from its source distribution with the CUDA toolkit present: setup.py compiles the kernels into
# gsplat/csrc.so here, at image build, so a session never JIT-compiles them (the workload checks).
splat_image = (
    modal.Image.from_registry(CUDA_DEVEL_IMAGE, add_python="3.11")
    .pip_install(*BASE_PACKAGES)
    .pip_install(*SPLAT_PACKAGES, *RECORDING_PACKAGES)
    .env({"GPURELAY_MODAL_PROFILE": PROFILE, "TORCH_CUDA_ARCH_LIST": GSPLAT_ARCHS, "MAX_JOBS": "8"})
    .pip_install(*GSPLAT_PACKAGES, extra_options="--no-build-isolation --no-binary gsplat")
)


def _with_source(image: modal.Image) -> modal.Image:
    """``image`` plus the route table and the project's packages (added last: code changes are cheap)."""
    return image.add_local_file(str(DEFAULT_ROUTES), "/root/deploy/routes.yaml").add_local_python_source(
        "contracts", "services", "modal_workers"
    )


colmap_image = video_image.pip_install(*COLMAP_PACKAGES)
export_image = video_image.pip_install(*EXPORT_PACKAGES)
video_image, torch_image = _with_source(video_image), _with_source(torch_image)
colmap_image, export_image = _with_source(colmap_image), _with_source(export_image)
vlm_image, splat_image = _with_source(vlm_image), _with_source(splat_image)
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
    """Run ``workload`` (module:function) for ``request`` in this container; the outcome as JSON.

    ``storage`` holds the dispatcher's storage settings (no credentials: those come from the
    ``gpurelay-storage`` secret's environment variables, read by the settings class).
    """
    from contracts.runs import RunRequest
    from modal_workers.runtime.sinks import IngestSink
    from modal_workers.runtime.worker_runtime import WorkerRuntime, load_workload
    from services.common.config import BaseServiceSettings
    from services.common.observability import tracing
    from services.common.storage import make_storage

    settings = BaseServiceSettings(
        storage_backend=storage.get("backend", "s3"),
        storage_bucket=storage.get("bucket", "gpurelay"),
        storage_prefix=storage.get("prefix", ""),
        s3_endpoint_url=storage.get("endpoint_url"),
        s3_region=storage.get("region", "us-east-1"),
    )
    if not tracing.enabled():
        tracing.setup_tracing(settings, "worker")  # GPURELAY_OTLP_ENDPOINT from the container's secret, if any
    runtime = WorkerRuntime(lambda: IngestSink.create(ingest["url"], ingest["token"]), lambda: make_storage(settings))
    try:
        outcome = runtime.run(load_workload(workload), RunRequest.model_validate(request))
    finally:
        runtime.close()
        tracing.flush()
    return outcome.model_dump(mode="json")


def warm(workload: str) -> None:
    """Call the workload module's ``warm()`` (load models once per container), if it has one."""
    import importlib

    try:
        module = importlib.import_module(workload.partition(":")[0])
    except ImportError:
        return  # the run reports workload_missing
    hook = getattr(module, "warm", None)
    if callable(hook):
        hook()


@app.function(image=video_image, secrets=[storage_secret], **options("lap_compare", "lap_compare"))
def lap_compare(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """Optical flow on one or two lap videos."""
    return run_request("modal_workers.lap_compare:run", request, ingest, storage)


@app.function(image=torch_image, secrets=[storage_secret], **options("pose", "pose"))
def pose(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """YOLO pose on a sports video (the model is cached per container by the workload)."""
    return run_request("modal_workers.pose:run", request, ingest, storage)


@app.function(image=video_image, secrets=[storage_secret], **options("nerf", "nerf_check"))
def nerf_check(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """NeRF stage 1 (CPU): the photo archive checked before any GPU stage."""
    return run_request("modal_workers.nerf:check", request, ingest, storage)


@app.function(image=colmap_image, secrets=[storage_secret], **options("nerf", "nerf_colmap"))
def nerf_colmap(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """NeRF stage 2: camera poses with COLMAP."""
    return run_request("modal_workers.nerf:colmap", request, ingest, storage)


@app.function(image=torch_image, secrets=[storage_secret], **options("nerf", "nerf_train"))
def nerf_train(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """NeRF stage 3: training (checkpointed; a retry resumes)."""
    return run_request("modal_workers.nerf:train", request, ingest, storage)


@app.function(image=torch_image, secrets=[storage_secret], **options("nerf", "nerf_render"))
def nerf_render(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """NeRF stage 4: turntable render."""
    return run_request("modal_workers.nerf:render", request, ingest, storage)


@app.function(image=export_image, secrets=[storage_secret], **options("session_export", "session_export"))
def session_export(request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    """A session's recording as a LeRobot dataset, an MCAP or a Rerun file (CPU)."""
    return run_request("modal_workers.recordings:run", request, ingest, storage)


@app.cls(image=splat_image, secrets=[storage_secret], **options("splat", "run"))
class SplatSession:
    """A live Gaussian-splat session (state kept in the container)."""

    workload = "modal_workers.splat:run"

    @modal.enter()
    def load(self) -> None:
        """Once per container: the workload's ``warm()`` hook."""
        warm(self.workload)

    @modal.method()
    def run(self, request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
        """Train from streamed frames until stopped."""
        return run_request(self.workload, request, ingest, storage)


@app.cls(image=vlm_image, secrets=[storage_secret], **options("vlm", "run"))
class VlmSession:
    """A stateful VLM session; the model is loaded once per container."""

    workload = "modal_workers.vlm:run"

    @modal.enter()
    def load(self) -> None:
        """Once per container: the workload's ``warm()`` hook (loads the VLM)."""
        warm(self.workload)

    @modal.method()
    def run(self, request: dict[str, Any], ingest: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
        """Chunked inference on streamed frames until stopped."""
        return run_request(self.workload, request, ingest, storage)
