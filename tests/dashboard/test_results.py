"""What a job page draws from a finished job's result and artifacts, per kind (no browser)."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.api_jobs import JobOut, JobUrls
from contracts.job_record import Artifact, JobCost, JobProgress, JobStatus, JobTimings
from contracts.job_specs import parse_job_spec
from services.gateway.dashboard.results import results_view


def job(kind: str, artifacts: list[tuple[str, str]], result: dict[str, object] | None = None) -> JobOut:
    now = datetime.now(UTC)
    spec = parse_job_spec({"kind": kind, "inputs": {"video": {"upload_id": "upl_1"}}})
    return JobOut(
        id="job_1",
        kind=spec.kind,
        status=JobStatus.SUCCEEDED,
        spec=spec,
        attempt=1,
        max_attempts=3,
        progress=JobProgress(fraction=1.0),
        result=result,
        artifacts=tuple(
            Artifact(name=n, key=f"results/t/job_1/{n}", content_type=t, size=1, url=f"https://s/{n}")
            for n, t in artifacts
        ),
        timings=JobTimings(),
        cost=JobCost(),
        created_at=now,
        updated_at=now,
        urls=JobUrls(self="s", events="e", cancel="c"),
    )


def test_lap_compare_shows_its_overlay_and_charts_from_metrics() -> None:
    view = results_view(job("lap_compare", [("overlay.mp4", "video/mp4"), ("metrics.json", "application/json")]))
    assert [v["name"] for v in view.videos] == ["overlay.mp4"]
    assert view.data_url == "https://s/metrics.json"


def test_pose_shows_its_video_minimap_source_and_a_row_per_player() -> None:
    analytics = {"distance": 12.5, "averageSpeed": 1.25, "maxSpeed": 3.0, "speedUnit": "m/s"}
    result = {
        "analytics": {"unit": "m"},
        "players": {"2": {"id": 2, "frameCount": 40, "analytics": analytics}, "1": {"id": 1, "frameCount": 9}},
    }
    arts = [("processed.mp4", "video/mp4"), ("results.json", "application/json")]
    view = results_view(job("pose", arts, result))
    assert [v["name"] for v in view.videos] == ["processed.mp4"]
    assert view.data_url == "https://s/results.json"
    assert view.unit == "m"
    assert [(p["id"], p["frames"], p["distance"], p["max"]) for p in view.players] == [
        (1, 9, 0.0, 0.0),
        (2, 40, 12.5, 3.0),
    ]


def test_a_job_without_artifacts_shows_nothing_yet() -> None:
    assert results_view(job("pose", [])).empty
