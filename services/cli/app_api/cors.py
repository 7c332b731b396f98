"""``gpurelay cors ls|set``: the browser origins the tenant's front ends call gpurelay from, beside the
deployment's global list (``PUT /v1/cors``; a change reaches every replica in milliseconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli.client import async_client, cli_settings, run
from services.cli.output import CommandGroup

cors_app = CommandGroup(help="Show or set your tenant's CORS origins.", no_args_is_help=True)
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")]


@cors_app.command("ls")
def list_origins(data_dir: DataDir = None) -> None:
    """Print the tenant's origins, one a line."""
    settings = cli_settings(data_dir)

    async def fetch() -> dict[str, Any]:
        async with async_client(settings) as client:
            answer: dict[str, Any] = await client.request("GET", "/v1/cors")
            return answer

    for origin in run(fetch)["origins"]:
        typer.echo(origin)


@cors_app.command("set")
def set_origins(
    origins: Annotated[list[str] | None, typer.Argument(help="scheme://host[:port] (none: remove them all).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Replace the tenant's origins: ``gpurelay cors set https://app.example.com http://localhost:5173``."""
    settings = cli_settings(data_dir)

    async def put() -> dict[str, Any]:
        async with async_client(settings) as client:
            answer: dict[str, Any] = await client.request("PUT", "/v1/cors", json={"origins": origins or []})
            return answer

    stored = run(put)["origins"]
    typer.echo("\n".join(stored) if stored else "no tenant origins (the global list still applies)")
