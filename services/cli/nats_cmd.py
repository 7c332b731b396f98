"""``gpurelay nats``: the operator's part of NATS: applying the declarations, and the users' config.

* ``gpurelay nats declare`` creates the streams and KV buckets of this deployment's namespace and
  updates those that changed (idempotent). Where services connect as their roles' users they only bind
  to them, so the operator runs it first (compose's ``nats-init``), and again after an upgrade.
* ``gpurelay nats auth-config`` prints the ``authorization`` block of nats-server's config: one user per
  role with its permissions, each password read from ``$GPURELAY_NATS_<ROLE>_PASSWORD`` (what
  ``deploy/nats/auth.conf`` holds, for another namespace with ``--namespace``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from contracts.subjects import Namespace
from services.cli.output import CommandGroup
from services.common.config import BaseServiceSettings, load_settings
from services.common.nats.connection import connect
from services.common.nats.declarations import ApplyReport, apply_declarations, declarations_of
from services.common.nats.server.auth import deploy_authorization

nats_app = CommandGroup(help="Apply the stream and bucket declarations; print the NATS users' config.")
console = Console(stderr=True)
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")]


async def declare(settings: BaseServiceSettings) -> ApplyReport:
    """Apply the declarations of ``settings``' namespace, connected as their user (the operator's)."""
    nc = await connect(settings, "cli-declare")
    try:
        return await apply_declarations(nc.jetstream(), declarations_of(settings))
    finally:
        await nc.close()


@nats_app.command("declare")
def declare_command(data_dir: DataDir = None) -> None:
    """Create or update every stream and KV bucket (as the operator's user, GPURELAY_NATS_USER)."""
    report = asyncio.run(declare(load_settings(BaseServiceSettings, data_dir)))
    console.print(
        f"created {len(report.created)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}"
        + (f", kept as they are (retention differs): {', '.join(report.kept)}" if report.kept else "")
    )


@nats_app.command("auth-config")
def auth_config(
    namespace: Annotated[str, typer.Option(help="The deployment's namespace (GPURELAY_NAMESPACE).")] = "",
) -> None:
    """Print nats-server's users block: one user per role, passwords from $GPURELAY_NATS_<ROLE>_PASSWORD."""
    typer.echo(deploy_authorization(Namespace(namespace)), nl=False)
