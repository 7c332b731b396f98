"""What a job page draws from a finished job's result and artifacts, per kind (no browser)."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.api.jobs import JobOut, JobUrls
from contracts.job_parts import Artifact, JobCost, JobProgress, JobStatus, JobTimings
from contracts.specs.jobs import parse_job_spec
from services.gateway.dashboard.render import TEMPLATES
from services.gateway.dashboard.results import results_view


def job(
    kind: str, artifacts: list[tuple[str, str]], result: dict[str, object] | None = None, **spec_fields: object
) -> JobOut:
    now = datetime.now(UTC)
    spec = parse_job_spec({"kind": kind, "inputs": {"video": {"upload_id": "upl_1"}}, **spec_fields})
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


NERF_RESULT = {  # a nerf job's result as the dispatcher folds its four stages' results
    "registered_images": 16, "psnr": 24.318, "psnr_initial": 9.1, "iterations": 40, "frames_rendered": 5, "zips": 3,
    "stages": {
        "check": {"gpu": None, "seconds": 0.412, "gpu_seconds": 0.0, "cost_usd": 0.0},
        "colmap": {"gpu": "T4", "seconds": 3.5, "gpu_seconds": 3.5, "cost_usd": 0.000583},
        "train": {"gpu": "A10G", "seconds": 61.25, "gpu_seconds": 61.25, "cost_usd": 0.018715},
        "render": {"gpu": "T4", "seconds": 7.0, "gpu_seconds": 7.0, "cost_usd": 0.001167},
    },
}  # fmt: skip
NERF_ARTIFACTS = [
    ("colmap/transforms.json", "application/json"), ("colmap/sparse.zip", "application/zip"),
    ("train/model.pt", "application/octet-stream"), ("render/frames_0001.zip", "application/zip"),
    ("render/frames_0002.zip", "application/zip"), ("render/frames_0003.zip", "application/zip"),
    ("render/preview.mp4", "video/mp4"), ("render/preview.webm", "video/webm"),
]  # fmt: skip


def nerf_job() -> JobOut:
    inputs = {"images": {"upload_id": "upl_1"}}
    return job("nerf", NERF_ARTIFACTS, NERF_RESULT, inputs=inputs, params={"frames": 5, "batch_size": 2})


def test_nerf_shows_the_turntable_the_frame_batches_with_counts_and_a_row_per_stage() -> None:
    view = results_view(nerf_job())
    assert [(v["name"], [s["name"] for s in v["sources"]]) for v in view.videos] == [
        ("render/preview.mp4", ["render/preview.webm", "render/preview.mp4"])
    ]
    assert [(b["name"], b["frames"]) for b in view.batches] == [
        ("render/frames_0001.zip", 2), ("render/frames_0002.zip", 2), ("render/frames_0003.zip", 1),
    ]  # fmt: skip
    assert view.facts == {"registered_images": 16, "psnr": 24.318, "frames_rendered": 5}
    assert [(s["name"], s["gpu"], s["gpu_seconds"]) for s in view.stages] == [
        ("check", None, 0.0), ("colmap", "T4", 3.5), ("train", "A10G", 61.25), ("render", "T4", 7.0),
    ]  # fmt: skip


def test_the_nerf_job_panel_html_plays_the_webm_and_lists_batches_facts_and_stages() -> None:
    record = nerf_job()
    html = TEMPLATES.get_template("job_panel.html").render(job=record, view=results_view(record))
    sources = '<source src="https://s/render/preview.webm" type="video/webm" data-name="render/preview.webm">'
    assert sources + '<source src="https://s/render/preview.mp4" type="video/mp4"' in html
    batch = '<a href="https://s/render/frames_0003.zip" download="frames_0003.zip" data-batch="render/frames_0003.zip">'
    assert batch + "render/frames_0003.zip</a></td><td>1</td>" in html
    assert '<dd data-fact="registered_images">16</dd>' in html
    assert '<dd data-fact="psnr">24.32 dB</dd>' in html
    train = '<tr data-stage="train"><td>train</td><td>A10G</td><td>61.2</td><td>61.2</td><td>$0.0187</td></tr>'
    assert train in html
    assert '<tr data-stage="check"><td>check</td><td>CPU</td><td>0.4</td><td>0.0</td><td>$0.0000</td></tr>' in html
