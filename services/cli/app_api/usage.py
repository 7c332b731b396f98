"""``gpurelay usage``: jobs, sessions, GPU-seconds and cost per day, kind or subject, and the quotas."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.cli.app_api.connect import api_client, echo_json, utc

if TYPE_CHECKING:
    from gpurelay_client._sync_catalog import GroupBy

GROUPINGS: dict[str, GroupBy] = {"day": "day", "kind": "kind", "subject": "subject"}
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")]


def usage(
    group_by: Annotated[str, typer.Option("--group-by", help="day, kind or subject.")] = "day",
    since: Annotated[
        datetime | None, typer.Option("--from", help="Created at or after (default: 30 days ago).")
    ] = None,
    until: Annotated[datetime | None, typer.Option("--to", help="Created before (default: now).")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this end user's jobs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Show usage per group with its total, and the quotas with today's use."""
    if (grouping := GROUPINGS.get(group_by)) is None:
        raise typer.BadParameter("day, kind or subject", param_hint="--group-by")
    with api_client(data_dir) as client:
        answer = client.usage.get(from_=utc(since), to=utc(until), group_by=grouping, subject=subject)
    if as_json:
        echo_json(answer)
        return
    table = Table(
        group_by, "jobs", "sessions", "GPU-s", "cost $", title=f"usage {answer.from_:%Y-%m-%d} → {answer.to:%Y-%m-%d}"
    )
    for group in [*answer.groups, answer.total]:
        key = "total" if group is answer.total else (group.key or "(none)")
        table.add_row(key, str(group.jobs), str(group.sessions), f"{group.gpu_seconds:.1f}", f"{group.cost_usd:.4f}")
    out = Console()
    out.print(table)
    q = answer.quota
    limit = f"{q.gpu_seconds_per_day:g}" if q.gpu_seconds_per_day is not None else "no limit"
    queued = f"{q.max_queued}" if q.max_queued is not None else "no limit"
    out.print(
        f"quota ({q.applies_to}): {q.gpu_seconds_today:.1f} of {limit} GPU-s today; {q.queued} queued of {queued}"
    )
