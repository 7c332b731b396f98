"""``gpurelay robots ls|joints``: the tenant's robots, and a robot's joint history (JSON lines, oldest first)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from services.cli.app_api.connect import api_client, utc
from services.cli.client import err_console
from services.cli.jobs import short_time
from services.cli.output import CommandGroup, print_table

robots_app = CommandGroup(help="List robots and read their joint history.", no_args_is_help=True)
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")]


@robots_app.command("ls")
def list_robots(data_dir: DataDir = None) -> None:
    """The robots that sent joint angles lately: latest sample, joint count, bound session."""
    with api_client(data_dir) as client:
        robots = client.robots.list().items
    table = Table("robot", "last sample", "joints", "session", title=f"{len(robots)} robots")
    for robot in robots:
        session = f"{robot.session.id} ({robot.session.state})" if robot.session else ""
        table.add_row(robot.id, short_time(robot.last_sample_at.isoformat()), str(robot.joint_count), session)
    print_table(table, "robot", "session")


@robots_app.command("joints")
def joints(
    robot_id: Annotated[str, typer.Argument(help="The robot.")],
    since: Annotated[
        datetime | None, typer.Option(help="Samples stored at or after (ISO 8601, UTC if no zone).")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Samples stored before.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many samples (pages are followed).")] = 1000,
    data_dir: DataDir = None,
) -> None:
    """Print the robot's samples as JSON lines, oldest first (``seq``, ``received_at``, ``sample``)."""
    window = {"since": utc(since), "until": utc(until)}
    printed, cursor = 0, None
    with api_client(data_dir) as client:
        while printed < limit:
            page = client.robots.joints(robot_id, **window, limit=min(1000, limit - printed), cursor=cursor)
            for item in page.items:
                typer.echo(json.dumps(item.model_dump(mode="json"), separators=(",", ":")))
            printed += len(page.items)
            if (cursor := page.next_cursor) is None:
                break
    if printed == 0:  # an unknown robot reads as one with no samples: say which it could be
        within = " in that window" if since or until else ""
        hint = "`gpurelay robots ls` lists those that did"
        err_console.print(f"0 samples: robot {robot_id!r} sent none{within} ({hint})")
        return
    err_console.print(f"{printed} samples" + (" (more: raise --limit)" if cursor else ""))
