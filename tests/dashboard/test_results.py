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
    arts = [("overlay.mp4", "video/mp4"), ("overlay.webm", "video/webm"), ("metrics.json", "application/json")]
    view = results_view(job("lap_compare", arts))
    assert [v["name"] for v in view.videos] == ["overlay.mp4"]  # one player for the two renditions
    assert [s["type"] for s in view.videos[0]["sources"]] == ["video/webm", "video/mp4"]  # the playable one first
    assert view.videos[0]["download"] == {"name": "overlay.mp4", "url": "https://s/overlay.mp4"}
    assert view.data_url == "https://s/metrics.json"


def test_a_video_without_renditions_is_one_source_and_no_extra_link() -> None:
    arts = [("render.mp4", "video/mp4"), ("orbit.webm", "video/webm")]
    view = results_view(job("pose", arts))
    assert [(v["name"], [s["name"] for s in v["sources"]], v["download"]) for v in view.videos] == [
        ("render.mp4", ["render.mp4"], None),
        ("orbit.webm", ["orbit.webm"], None),
    ]


def test_pose_shows_its_video_minimap_source_and_a_row_per_player() -> None:
    analytics = {"distance": 12.5, "averageSpeed": 1.25, "maxSpeed": 3.0, "speedUnit": "m/s"}
    result = {
        "analytics": {"unit": "m"},
        "players": {"2": {"id": 2, "frameCount": 40, "analytics": analytics}, "1": {"id": 1, "frameCount": 9}},
    }
    arts = [("processed.mp4", "video/mp4"), ("results.json", "application/json"), ("processed.webm", "video/webm")]
    view = results_view(job("pose", arts, result))
    assert [v["name"] for v in view.videos] == ["processed.mp4"]
    assert [s["name"] for s in view.videos[0]["sources"]] == ["processed.webm", "processed.mp4"]
    assert view.data_url == "https://s/results.json"
    assert view.unit == "m"
    assert [(p["id"], p["frames"], p["distance"], p["max"]) for p in view.players] == [
        (1, 9, 0.0, 0.0),
        (2, 40, 12.5, 3.0),
    ]


def test_a_job_without_artifacts_shows_nothing_yet() -> None:
    assert results_view(job("pose", [])).empty
