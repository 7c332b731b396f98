"""The route table model, the backoff, and the retention sweep."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
from nats.js.kv import KeyValue
from pydantic import ValidationError

from contracts.envelope import utc_now
from contracts.job_parts import Artifact, JobStatus
from contracts.job_record import JobRecord
from contracts.route_table import DEFAULT_ROUTES, RetryPolicy, load_route_table, parse_route_table
from contracts.specs.jobs import parse_job_spec
from services.common.storage import LocalStorage, result_key
from services.dispatcher.retention import Retention
from services.dispatcher.store import JobStore
from tests.support.dispatcher import POSE, dispatcher_settings


def test_the_deployed_table_validates_and_nerf_is_a_weighted_pipeline() -> None:
    table = load_route_table(DEFAULT_ROUTES)
    for profile in ("dev", "prod"):
        nerf = table.route(profile, "nerf")
        assert [s.name for s in nerf.steps()] == ["check", "colmap", "train", "render"]
        assert sum(nerf.weights()) == pytest.approx(1.0)
        assert nerf.stage_gpus(nerf.stages[0]) == ()  # the archive check runs on a CPU
    prod = table.route("prod", "nerf")
    assert prod.stage_gpus(prod.stages[2]) == ("A10G", "A100")
    check = prod.stage_report(prod.stages[0], 10.0)
    assert (check["gpu"], check["gpu_seconds"], check["cost_usd"]) == (None, 0.0, 0.0)
    train = prod.stage_report(prod.stages[2], 3600.0)
    assert (train["gpu"], train["gpu_seconds"], train["cost_usd"]) == ("A10G", 3600.0, 1.10)


@pytest.mark.parametrize(
    "route",
    [
        "{backend: gpu, function: f}",
        "{backend: local, function: f}",
        "{backend: modal, function: f, gpus: [t4]}",
        "{backend: modal, function: f, concurrency: 0}",
        "{backend: modal, function: f, surprise: 1}",
    ],
)
def test_bad_routes_are_refused(route: str) -> None:
    with pytest.raises(ValidationError):
        parse_route_table(f"profiles: {{dev: {{pose: {route}}}}}")


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(backoff_initial_s=1, backoff_max_s=5, jitter=0.2)
    rng = random.Random(1)
    delays = [policy.delay_s(n, rng) for n in (1, 2, 3, 4, 5)]
    for delay, base in zip(delays, (1, 2, 4, 5, 5), strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert len({round(d, 6) for d in delays}) == 5


async def test_retention_deletes_results_and_marks_artifacts_expired(jobs_kv: KeyValue, tmp_path: Path) -> None:
    from contracts.subjects import Namespace

    settings = dispatcher_settings("nats://unused", Namespace(), tmp_path)
    storage = LocalStorage.from_settings(settings)
    key = result_key("", "acme", "job_1", "out.txt")
    await storage.put(key, b"x", "text/plain")
    ended = utc_now() - timedelta(hours=10)
    record = JobRecord.new("job_1", "acme", parse_job_spec(POSE), ended - timedelta(minutes=1))
    record = record.model_copy(
        update={
            "status": JobStatus.SUCCEEDED,
            "artifacts": (Artifact(name="out.txt", key=key, size=1),),
            "timings": record.timings.model_copy(update={"finished_at": ended}),
        }
    )
    store = JobStore(jobs_kv)
    assert await store.write(record, None)
    now = [utc_now()]
    retention = Retention(jobs_kv, store, storage, retention_hours=48, clock=lambda: now[0])
    assert await retention.sweep() == []
    now[0] += timedelta(hours=39)
    assert await retention.sweep() == ["job_1"]
    assert await storage.head(key) is None
    swept, _ = await store.get("acme", "job_1")
    assert swept is not None
    assert all(a.expired for a in swept.artifacts)
    assert await retention.sweep() == []
