"""``gpurelay jobs ls|show`` (``cancel``: :mod:`services.cli.app_api.listing`), and the job record's rendering
shared with ``submit``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contracts.job_parts import JobStatus
from contracts.specs.jobs import JobKind
from services.cli.client import as_dict, async_client, cli_settings, kind_name, run, status_name
from services.cli.output import CommandGroup, print_table
from services.common.queue_place import queue_place_text

jobs_app = CommandGroup(help="List, show and cancel jobs.", no_args_is_help=True)
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")]
STATUS_STYLE = {"succeeded": "green", "failed": "red", "canceled": "yellow", "running": "cyan"}


def short_time(value: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` (empty when unset)."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def _seconds(start: str | None, end: str | None) -> str:
    """The seconds between two ISO times, or empty."""
    if not start or not end:
        return ""
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return f"{delta.total_seconds():.1f} s"


def human_size(n: int) -> str:
    """A byte count for people: 512 B, 1.5 MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _status(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record_table(job: dict[str, Any]) -> Table:
    """A job record as a two-column table: status, attempts, timings, cost, error, result summary."""
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    timings, cost, progress = job.get("timings") or {}, job.get("cost") or {}, job.get("progress") or {}
    table.add_row("id", str(job.get("id", "")))
    table.add_row("status", _status(str(job.get("status", ""))))
    table.add_row("kind", str(job.get("kind", "")))
    table.add_row("attempts", f"{job.get('attempt', 1)} of {job.get('max_attempts', 1)}")
    table.add_row("progress", f"{100 * float(progress.get('fraction', 0.0)):.0f} %  {progress.get('stage') or ''}")
    if job.get("queue"):
        table.add_row("queue", queue_place_text(job["queue"]))
    for name in ("created_at", "queued_at", "dispatched_at", "started_at", "finished_at"):
        if timings.get(name):
            table.add_row(name.removesuffix("_at"), short_time(timings[name]))
    if took := _seconds(timings.get("started_at"), timings.get("finished_at")):
        table.add_row("run time", took)
    if cost.get("gpu_seconds"):
        gpu = f" on {cost['gpu']}" if cost.get("gpu") else ""
        table.add_row("cost", f"{cost['gpu_seconds']:.1f} GPU-s{gpu} ≈ ${cost.get('estimated_usd', 0.0):.4f}")
    if error := job.get("error"):
        table.add_row("error", f"[red]{error.get('code', '')}[/]: {error.get('message', '')}")
    for key, value in (job.get("result") or {}).items():
        table.add_row(f"result.{key}", _short(value))
    return table


def artifacts_table(job: dict[str, Any]) -> Table | None:
    """The job's artifacts: name, type, size, link expiry (``None`` when it has none)."""
    artifacts = job.get("artifacts") or []
    if not artifacts:
        return None
    table = Table("artifact", "type", "size", "link expires", title="artifacts")
    for a in artifacts:
        expires = "expired" if a.get("expired") else short_time(a.get("expires_at"))
        table.add_row(str(a.get("name")), str(a.get("content_type", "")), human_size(int(a.get("size", 0))), expires)
    return table


def show_record(job: dict[str, Any], console: Console | None = None) -> None:
    """Print the record table, the artifacts table and each download URL on a line of its own."""
    out = console or Console()
    out.print(record_table(job))
    if (artifacts := artifacts_table(job)) is not None:
        out.print(artifacts)
        for a in job.get("artifacts") or []:
            if a.get("url"):
                out.print(f"{a['name']}  {a['url']}", soft_wrap=True, highlight=False, markup=False)


@jobs_app.command("ls")
def list_jobs(
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this status.")] = None,
    kind: Annotated[JobKind | None, typer.Option(help="Only jobs of this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many jobs (pages are followed).")] = 20,
    page_size: Annotated[int, typer.Option(min=1, max=100, hidden=True, help="Jobs per request.")] = 100,
    data_dir: DataDir = None,
) -> None:
    """List your jobs, newest first."""
    settings = cli_settings(data_dir)

    async def fetch() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        async with async_client(settings) as client:
            while len(items) < limit:
                page = await client.jobs.list_page(
                    status=status_name(status),
                    kind=kind_name(kind),
                    limit=min(page_size, limit - len(items)),
                    cursor=cursor,
                )
                items += [as_dict(job) for job in page.items]
                if not (cursor := page.next_cursor):
                    break
        return items[:limit]

    jobs = run(fetch)
    table = Table("id", "kind", "status", "progress", "created", "updated", title=f"{len(jobs)} jobs")
    for job in jobs:
        fraction = float((job.get("progress") or {}).get("fraction", 0.0))
        table.add_row(
            job["id"],
            job["kind"],
            _status(job["status"]),
            f"{100 * fraction:.0f} %",
            short_time(job.get("created_at")),
            short_time(job.get("updated_at")),
        )
    print_table(table, "id", "status")


@jobs_app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(help="The job id (job_...).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw record as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Show one job: status, attempts, timings, cost, result, error and artifact download URLs."""
    settings = cli_settings(data_dir)

    async def fetch() -> dict[str, Any]:
        async with async_client(settings) as client:
            return as_dict(await client.jobs.get(job_id))

    job = run(fetch)
    if as_json:
        typer.echo(json.dumps(job, indent=2))
    else:
        show_record(job)
