"""``gpurelay tokens create``: mint a short-lived scoped token with the API key (for a browser, a device,
a test). The token alone goes to stdout; ``--json`` prints what it may do and when it expires."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from contracts.api.tokens import Scope
from contracts.specs.jobs import JobKind
from services.cli.app_api.connect import api_client, echo_json
from services.cli.output import CommandGroup

tokens_app = CommandGroup(help="Mint short-lived scoped tokens.", no_args_is_help=True)
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")]


@tokens_app.command("create")
def create(
    scope: Annotated[list[Scope], typer.Option("--scope", "-s", help="A scope (repeat for several).")],
    kind: Annotated[list[JobKind] | None, typer.Option("--kind", help="Only jobs/sessions of this kind.")] = None,
    subject: Annotated[str | None, typer.Option(help="The app's end user the token acts for.")] = None,
    robot_id: Annotated[str | None, typer.Option("--robot-id", help="The one robot it reaches.")] = None,
    ttl: Annotated[int, typer.Option("--ttl", min=1, help="Lifetime in seconds (the gateway caps it).")] = 900,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole answer as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Mint a token: ``gpurelay tokens create -s jobs:write -s uploads:write --subject user-1``."""
    with api_client(data_dir) as client:
        kinds = [str(k) for k in kind] if kind else None
        minted = client.tokens.create(
            [str(s) for s in scope], kinds=kinds, subject=subject, robot_id=robot_id, ttl_s=ttl
        )
    if as_json:
        echo_json(minted)
    else:
        typer.echo(minted.token)
