"""``gpurelay session ls`` (also ``sessions ls``) and ``gpurelay jobs cancel`` by id or ``--filter``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from contracts.job_parts import JobStatus, SessionState
from contracts.specs.jobs import JobKind
from services.cli.app_api.connect import api_client, echo_json, utc
from services.cli.client import kind_name, status_name
from services.cli.jobs import short_time
from services.cli.output import print_table

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")]


def list_sessions(
    state: Annotated[SessionState | None, typer.Option(help="Only sessions in this state.")] = None,
    kind: Annotated[JobKind | None, typer.Option(help="Only sessions of this kind (splat, vlm).")] = None,
    robot_id: Annotated[str | None, typer.Option("--robot-id", help="Only sessions bound to this robot.")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this end user's sessions.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="At most this many (newest first).")] = 20,
    data_dir: DataDir = None,
) -> None:
    """List your sessions, newest first."""
    with api_client(data_dir) as client:
        page = client.sessions.list(state=state, kind=kind, robot_id=robot_id, subject=subject, limit=limit)
    table = Table("id", "kind", "state", "robot", "frames", "subject", "created", title=f"{len(page.items)} sessions")
    for s in page.items:
        created = short_time(s.created_at.isoformat())
        table.add_row(s.id, s.kind, s.state, s.robot_id or "", str(s.frames_received), s.subject or "", created)
    print_table(table, "id", "robot", "subject")


def cancel(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Job ids (job_...); or use --filter.")] = None,
    use_filter: Annotated[bool, typer.Option("--filter", help="Cancel every job the filter options match.")] = False,
    kind: Annotated[JobKind | None, typer.Option(help="--filter: jobs of this kind.")] = None,
    status: Annotated[JobStatus | None, typer.Option(help="--filter: jobs in this status.")] = None,
    subject: Annotated[str | None, typer.Option(help="--filter: jobs of this end user.")] = None,
    created_before: Annotated[datetime | None, typer.Option(help="--filter: jobs created before.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every job's outcome as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Ask for jobs to be canceled, by id or ``--filter`` (``--kind``, ``--status``, ``--subject``,
    ``--created-before``); each ends ``canceled`` unless it finishes first. Safe to repeat; exits 1 when a
    job named could not be (not found, already ended, outside the credential's kinds)."""
    if bool(job_ids) == use_filter:
        raise typer.BadParameter("give job ids, or --filter with its options", param_hint="JOB_IDS / --filter")
    with api_client(data_dir) as client:
        if job_ids:
            answer = client.jobs.cancel_many(job_ids)
        else:
            when = utc(created_before)
            answer = client.jobs.cancel_many(
                kind=kind_name(kind), status=status_name(status), subject=subject, created_before=when
            )
    if as_json:
        echo_json(answer)
        return
    out = Console(stderr=True)
    for result in answer.results:
        if result.outcome == "requested":
            out.print(f"cancel requested for [cyan]{result.id}[/] (status {result.status})")
        else:
            out.print(f"{result.id}: {result.outcome}" + (f" ({result.status})" if result.status else ""))
    if answer.more:
        out.print("more jobs match: run it again for the next ones")
    if not answer.results:
        out.print("no job matched")
    if any(r.outcome in ("not_found", "outside_scope", "ended") for r in answer.results):
        raise typer.Exit(1)
