"""What a finished job's page shows as pictures, per kind, from its result and artifacts.

- lap_compare: the overlay video, the speed profile (``metrics.json`` frames) and, with a
  reference lap, the per-segment deltas (``metrics.json`` alignment), drawn by ``results.js``.
- pose: the processed video, a court minimap with each player's trail (``results.json``) and a
  per-player table of distance and speed (the job's result).
- nerf: the turntable preview, the frame batches (``render/frames_0001.zip``, …) with their frame
  counts, registered images, PSNR and a row per pipeline stage (seconds, GPU-seconds, cost).
- anything else: every video and image artifact, shown as such.

Video artifacts that differ only by extension are renditions of one video (``overlay.mp4`` and
``overlay.webm``): one player whose ``<source>`` list offers the WebM first (every browser plays
VP8; none plays the workloads' ``mp4v``), and a download link to the other file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.api.jobs import JobOut

WEBM = "video/webm"


@dataclass(frozen=True)
class ResultsView:
    """The pictures of one job's results."""

    kind: str
    videos: list[dict[str, Any]] = field(default_factory=list)
    """One per video: ``name``, ``sources`` (``url``, ``type``; WebM first), ``download`` (or ``None``)."""
    images: list[dict[str, str]] = field(default_factory=list)
    data_url: str | None = None
    """The JSON artifact the page's charts are drawn from (metrics.json, results.json)."""
    players: list[dict[str, Any]] = field(default_factory=list)
    unit: str = "px"
    batches: list[dict[str, Any]] = field(default_factory=list)
    """nerf: one per zip of frames: ``name``, ``url`` and ``frames`` (its frame count)."""
    facts: dict[str, Any] = field(default_factory=dict)
    """nerf: ``registered_images``, ``psnr``, ``frames_rendered`` (those the result has)."""
    stages: list[dict[str, Any]] = field(default_factory=list)
    """A pipeline's stages: ``name``, ``gpu``, ``seconds``, ``gpu_seconds``, ``cost_usd``."""

    @property
    def empty(self) -> bool:
        """Nothing to show (yet)."""
        return not (self.videos or self.images or self.data_url or self.players or self.batches or self.stages)


def _urls(job: JobOut) -> dict[str, tuple[str, str]]:
    return {a.name: (a.url, a.content_type) for a in job.artifacts if a.url}


def _players(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, player in sorted((result.get("players") or {}).items(), key=lambda item: str(item[0])):
        stats = player.get("analytics") or {}
        rows.append(
            {
                "id": player.get("id", key),
                "frames": player.get("frameCount", 0),
                "distance": stats.get("distance", 0.0),
                "average": stats.get("averageSpeed", 0.0),
                "max": stats.get("maxSpeed", 0.0),
                "speed_unit": stats.get("speedUnit", ""),
            }
        )
    return rows


def _batches(job: JobOut, urls: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """The zips of frames in order, each with its frame count (every zip is full but the last)."""
    size = int(getattr(job.spec.params, "batch_size", 0) or 0)
    total = (job.result or {}).get("frames_rendered")
    names = sorted(n for n in urls if n.rpartition("/")[2].startswith("frames_") and n.endswith(".zip"))
    rows = []
    for number, name in enumerate(names, start=1):
        frames = min(size, int(total) - (number - 1) * size) if size and total is not None else None
        rows.append({"name": name, "url": urls[name][0], "frames": frames})
    return rows


def _stages(result: dict[str, Any]) -> list[dict[str, Any]]:
    stages = result.get("stages") or {}
    keys = ("gpu", "seconds", "gpu_seconds", "cost_usd")
    return [{"name": name, **{k: (report or {}).get(k) for k in keys}} for name, report in stages.items()]


def _videos(media: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The video artifacts grouped into renditions of one video (same name but the extension)."""
    groups: dict[str, list[dict[str, str]]] = {}
    for m in media:
        if m["type"].startswith("video/"):
            groups.setdefault(m["name"].rpartition(".")[0] or m["name"], []).append(m)
    videos = []
    for files in groups.values():
        sources = sorted(files, key=lambda m: m["type"] != WEBM)  # stable: the WebM first
        others = [m for m in files if m["type"] != WEBM]
        main = others[0] if others else sources[0]
        download = {"name": main["name"], "url": main["url"]} if others and len(files) > 1 else None
        videos.append({"name": main["name"], "sources": sources, "download": download})
    return videos


def on_this_origin(job: JobOut, base: str) -> JobOut:
    """``job`` with each URL on the gateway's own origin (``base``, ``GPURELAY_URL``) as a path, so a page
    reached under another host name or through a proxy fetches its results where it came from: a script's
    fetch of a result at ``base`` from there is cross-origin, refused without CORS headers (local storage's
    signed URLs are the gateway's; an object store's stay as they are)."""
    origin = base.rstrip("/")

    def here(url: str) -> str:
        return url[len(origin) :] if url.startswith(origin + "/") else url

    artifacts = [a.model_copy(update={"url": here(a.url)}) if a.url else a for a in job.artifacts]
    urls = job.urls.model_copy(update={name: here(url) for name, url in job.urls.model_dump().items()})
    return job.model_copy(update={"artifacts": artifacts, "urls": urls})


def results_view(job: JobOut) -> ResultsView:
    """The pictures of ``job``'s results (empty until it has artifacts)."""
    urls = _urls(job)
    media = [{"name": n, "url": u, "type": t} for n, (u, t) in urls.items()]
    videos = _videos(media)
    images = [m for m in media if m["type"].startswith("image/")]
    kind = job.kind.value
    if kind == "lap_compare":
        data = urls.get("metrics.json")
        return ResultsView(kind, videos=videos, data_url=data[0] if data else None)
    if kind == "pose":
        data = urls.get("results.json")
        result = job.result or {}
        unit = str((result.get("analytics") or {}).get("unit", "px"))
        return ResultsView(kind, videos=videos, data_url=data[0] if data else None, players=_players(result), unit=unit)
    if kind == "nerf":
        result = job.result or {}
        facts: dict[str, Any] = {k: result[k] for k in ("registered_images", "psnr", "frames_rendered") if k in result}
        return ResultsView(
            kind, videos=videos, images=images, batches=_batches(job, urls), facts=facts, stages=_stages(result)
        )
    return ResultsView(kind, videos=videos, images=images, stages=_stages(job.result or {}))
