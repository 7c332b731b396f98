"""NeRF test helpers: photo archives good and bad, and nerf jobs submitted through the gateway."""

from __future__ import annotations

import io
import stat
import zipfile
from typing import Any

import cv2
import numpy as np

from contracts.job_parts import Artifact
from contracts.route_table import DEFAULT_ROUTES, RetryPolicy, Route, load_route_table
from contracts.runs import RunRequest, StagePlan
from tests.support.gateway import Tenant, uploaded
from tests.support.lap import TENANT


def tiny_png(seed: int, size: int = 16) -> bytes:
    """A small random RGB PNG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    return data.tobytes()


def archive(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A zip of ``entries`` (name → bytes, deflated) and symbolic ``links`` (name → target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


def photos(count: int, prefix: str = "p") -> dict[str, bytes]:
    """``count`` tiny PNG photos named ``{prefix}{i}.png``."""
    return {f"{prefix}{i:02d}.png": tiny_png(i) for i in range(count)}


BAD_ARCHIVES: dict[str, tuple[bytes, str, str]] = {
    "traversal": (archive({**photos(8), "../evil.png": tiny_png(99)}), "invalid_archive", "../evil.png"),
    "symlink": (archive(photos(8), links={"link.png": "/etc/passwd"}), "invalid_archive", "link.png"),
    "bomb": (archive({**photos(8), "zeros.png": b"\0" * (8 * 1024 * 1024)}), "archive_too_large", "zeros.png"),
    "non_image": (archive({**photos(8), "notes.txt": b"hello, not a photo"}), "invalid_archive", "notes.txt"),
    "three_images": (archive(photos(3)), "too_few_images", "3 photos"),
}
"""name → (zip bytes, the failure code, what its message names); the bomb needs a cap under 8 MiB."""


def nerf_route(**overrides: Any) -> Route:
    """The dev profile's nerf pipeline as deployed, with one attempt (or ``overrides``)."""
    route = load_route_table(DEFAULT_ROUTES).route("dev", "nerf")
    values: dict[str, Any] = {"retries": RetryPolicy(max_attempts=1), "concurrency": 4, "price_per_gpu_hour": 3.6}
    values.update(overrides)
    return route.model_copy(update=values)


async def submit_nerf(tenant: Tenant, zip_bytes: bytes, params: dict[str, Any] | None = None) -> str:
    """Upload ``zip_bytes``, complete it and create a nerf job on it; the job id."""
    upload_id = await uploaded(tenant, zip_bytes, "application/zip")
    completed = await tenant.http.post(f"/v1/uploads/{upload_id}/complete")
    assert completed.status_code == 200, completed.text
    body = {"kind": "nerf", "inputs": {"images": {"upload_id": upload_id}}, "params": params or {}}
    created = await tenant.http.post("/v1/jobs", json=body)
    assert created.status_code in (200, 201, 202), created.text
    return str(created.json()["id"])


STAGES = ("check", "colmap", "train", "render")


def stage_request(
    stage: str, job_id: str, upload_id: str, params: dict[str, Any], inputs: tuple[Artifact, ...] = (), attempt: int = 1
) -> RunRequest:
    """The run request of one nerf stage, as the dispatcher sends it (its place among the four stages)."""
    index = STAGES.index(stage)
    spec = {"kind": "nerf", "inputs": {"images": {"upload_id": upload_id}}, "params": params}
    plan = StagePlan(name=stage, index=index, count=len(STAGES), offset=index / len(STAGES), weight=1 / len(STAGES))
    return RunRequest(
        tenant=TENANT, job_id=job_id, kind="nerf", attempt=attempt, spec=spec, function=f"modal_workers.nerf:{stage}",
        inputs=inputs, stage=plan, heartbeat_interval_s=5.0,
    )  # fmt: skip
