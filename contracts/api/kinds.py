"""``GET /v1/kinds``: each workload as an app builder needs it: its params' JSON Schema (defaults and
bounds), its inputs, what its result and artifacts hold, its GPUs and price (from the route table).

What a kind's result holds is written here, once, beside its spec model (:data:`RESULTS`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from contracts.base import Contract, JsonObject
from contracts.specs.jobs import SESSION_KINDS, SPEC_MODELS, JobKind

_BODY = ConfigDict(extra="forbid")
ACCEPT = {"video": ["video/*"], "reference": ["video/*"], "images": ["application/zip"]}
"""The media types each named input takes."""


class KindInput(Contract):
    """One input of a kind: an upload (or an https URL where the deployment allows)."""

    model_config = _BODY

    name: str
    required: bool
    accepts: list[str] = Field(description="Media types the upload may declare.")


class KindResult(Contract):
    """What a finished job (or an ended session) of the kind gives back."""

    model_config = _BODY

    fields: dict[str, str] = Field(description="The result's fields and what each holds.")
    artifacts: list[str] = Field(description="Its files (a '*' stands for a number).")


class KindOut(Contract):
    """One workload."""

    model_config = _BODY

    kind: JobKind
    session: bool = Field(description="Runs as a live session (POST /v1/sessions), else as a job.")
    summary: str
    params_schema: JsonObject = Field(description="JSON Schema of params, with defaults and bounds.")
    inputs: list[KindInput]
    result: KindResult
    gpus: list[str] = Field(description="The GPUs it runs on, in order of preference (empty: CPU).")
    price_per_gpu_second: float = Field(ge=0, description="USD per GPU-second (the route table's price).")
    stages: list[str] = Field(default_factory=list, description="A pipeline's stages, in order.")


class KindList(Contract):
    """Every workload this deployment routes (a token limited to kinds: those)."""

    model_config = _BODY

    items: list[KindOut]


RESULTS: dict[JobKind, tuple[str, KindResult]] = {
    JobKind.LAP_COMPARE: (
        "Dense optical flow over a lap video, aligned to a reference lap (DTW) when one is given.",
        KindResult(
            fields={
                "frames": "frames analysed", "fps": "frames per second", "duration_s": "the lap's length",
                "mean_speed": "mean flow speed", "mean_magnitude": "mean flow magnitude",
                "flow_method": "farneback or dis", "lap_time_delta_s": "against the reference (when given)",
            },
            artifacts=["overlay.mp4", "overlay.webm", "metrics.json", "manifest.json"],
        ),
    ),
    JobKind.POSE: (
        "YOLO pose with tracking, court and shuttle detection over a match video.",
        KindResult(
            fields={"players": "per player: id, frames and analytics", "shuttle": "visible frames",
                    "analytics": "the match's figures", "results": "the artifact with every frame"},
            artifacts=["processed.mp4", "processed.webm", "results.json", "manifest.json"],
        ),
    ),
    JobKind.NERF: (
        "A zip of product photos → camera poses (COLMAP) → a NeRF → a turntable of transparent frames.",
        KindResult(
            fields={"psnr": "held-out PSNR (dB)", "psnr_initial": "before training", "iterations": "trained"},
            artifacts=["model.pt", "frames_*.zip", "manifest.json"],
        ),
    ),
    JobKind.SESSION_EXPORT: (
        "A session's recording exported as a LeRobot v3 dataset (zipped), an MCAP or a Rerun file.",
        KindResult(
            fields={"format": "lerobot, mcap or rrd", "file": "the artifact's name", "frames": "frames exported",
                    "episodes": "lerobot's episodes", "frames_left_out": "lerobot: frames without joints",
                    "session_id": "the session exported"},
            artifacts=["<session id>.lerobot.zip, <session id>.mcap or <session id>.rrd"],
        ),
    ),
    JobKind.SPLAT: (
        "Live 3D Gaussian splatting from a robot's camera frames and joint angles.",
        KindResult(
            fields={"frame_count": "frames since the last reset", "gaussian_count": "Gaussians in the model",
                    "chunks": "the chunk PLYs", "psnr": "on the newest views", "stopped": "why it ended"},
            artifacts=["chunks/*.ply", "status.json", "splat.ply (the live snapshot, urls.ply)"],
        ),
    ),
    JobKind.VLM: (
        "Chunked, stateful vision-language inference over live frames.",
        KindResult(
            fields={"results": "answers given", "alerts": "answers that matched an alert", "stopped": "why it ended"},
            artifacts=[],
        ),
    ),
}  # fmt: skip


def params_schema(kind: JobKind) -> dict[str, Any]:
    """The JSON Schema of ``kind``'s params, as its spec model validates them."""
    model = SPEC_MODELS[kind].model_fields["params"].annotation
    schema: dict[str, Any] = (
        model.model_json_schema() if model is not None and hasattr(model, "model_json_schema") else {}
    )
    return schema


def kind_inputs(kind: JobKind) -> list[KindInput]:
    """The named inputs of ``kind`` (none for a session: its frames come live)."""
    model = SPEC_MODELS[kind].model_fields["inputs"].annotation
    schema = model.model_json_schema() if model is not None and hasattr(model, "model_json_schema") else {}
    required = set(schema.get("required", []))
    names = [] if kind in SESSION_KINDS else list(schema.get("properties", {}))
    return [KindInput(name=n, required=n in required, accepts=ACCEPT.get(n, ["*/*"])) for n in names]
