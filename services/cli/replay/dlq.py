"""``gpurelay dlq ls|show|redrive``: a webhook endpoint's dead letters, through the gateway's API.

The commands call ``/v1/webhooks/{id}/dead-letters`` with the API key (the Python client's ``request``),
so they see the key's tenant only; a redrive puts each dead letter's event back into the endpoint's
delivery queue with its ``webhook-id`` (the gateway does it: :mod:`services.gateway.webhooks.dead_letters`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from contracts.api.dead_letters import PAGE_MAX
from services.cli.client import async_client, cli_settings, run
from services.cli.jobs import short_time
from services.cli.output import CommandGroup, print_table

dlq_app = CommandGroup(help="A webhook endpoint's dead letters: list, show, redrive.", no_args_is_help=True)
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")]
Endpoint = Annotated[str, typer.Argument(help="The endpoint id (whe_...) or a job's webhook (jobhook-JOB_ID).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _path(endpoint_id: str) -> str:
    return f"/v1/webhooks/{quote(endpoint_id, safe='')}/dead-letters"


@dlq_app.command("ls")
def list_dead_letters(
    endpoint_id: Endpoint,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (pages are followed).")] = 100,
    after: Annotated[int, typer.Option(min=0, help="Only dead letters after this id.")] = 0,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """List the endpoint's dead letters, oldest first."""
    settings = cli_settings(data_dir)

    async def fetch() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: int | None = after
        async with async_client(settings) as client:
            while cursor is not None and len(items) < limit:
                params = {"after": cursor, "limit": min(PAGE_MAX, limit - len(items))}
                page = await client.request("GET", _path(endpoint_id), params=params)
                items += page["data"]
                cursor = page.get("next_after")
        return items[:limit]

    letters = run(fetch)
    if as_json:
        typer.echo(json.dumps(letters, indent=2))
        return
    table = Table("id", "event", "type", "job", "attempts", "last", "dead since", title=f"{len(letters)} dead letters")
    for d in letters:
        last = str(d["last_status"]) if d.get("last_status") else (d.get("last_error") or "")
        table.add_row(
            str(d["id"]), d["event_id"], d["event_type"], d.get("job_id") or "", str(d["attempts"]),
            last[:40], short_time(d.get("dead_lettered_at")),
        )  # fmt: skip
    print_table(table, "id", "event", "job")


@dlq_app.command("show")
def show(
    endpoint_id: Endpoint,
    dead_id: Annotated[int, typer.Argument(min=1, help="The dead letter's id (from `dlq ls`).")],
    data_dir: DataDir = None,
) -> None:
    """Print one dead letter as JSON, with the event a redrive would deliver."""
    settings = cli_settings(data_dir)

    async def fetch() -> dict[str, Any]:
        async with async_client(settings) as client:
            found: dict[str, Any] = await client.request("GET", f"{_path(endpoint_id)}/{dead_id}")
            return found

    typer.echo(json.dumps(run(fetch), indent=2))


@dlq_app.command("redrive")
def redrive(
    endpoint_id: Endpoint,
    ids: Annotated[list[int] | None, typer.Option("--id", min=1, help="A dead letter to redrive (repeatable).")] = None,
    redrive_all: Annotated[bool, typer.Option("--all", help="Every dead letter of the endpoint.")] = False,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Deliver dead letters again (``--id`` ... or ``--all``), each with its original webhook-id."""
    if bool(ids) == redrive_all:
        raise typer.BadParameter("give --id (one or more) or --all", param_hint="--id")
    settings = cli_settings(data_dir)

    async def post() -> dict[str, Any]:
        total: dict[str, Any] = {"redriven": [], "not_found": [], "refused": [], "remaining": 0}
        async with async_client(settings) as client:
            while True:
                body = {"all": True} if redrive_all else {"ids": ids}
                result = await client.request("POST", f"{_path(endpoint_id)}/redrive", json=body)
                for key in ("redriven", "not_found", "refused"):
                    total[key] += result[key]
                total |= {"remaining": result["remaining"], "endpoint_enabled": result["endpoint_enabled"]}
                if not (redrive_all and result["redriven"] and result["remaining"]):
                    return total

    result = run(post)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    err = Console(stderr=True)
    err.print(f"[green]{len(result['redriven'])} redriven[/], {result['remaining']} dead letters left")
    for dead_id in result["not_found"]:
        err.print(f"  [yellow]•[/] {dead_id}: not a dead letter of {endpoint_id}")
    for refusal in result["refused"]:
        err.print(f"  [red]•[/] {refusal['id']}: {refusal['reason']}")
    if not result.get("endpoint_enabled", True):
        err.print("[yellow]the endpoint is disabled[/]: the deliveries wait until it is enabled")
    if result["not_found"] or result["refused"]:
        raise typer.Exit(1)
