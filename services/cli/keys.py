"""``gpurelay keys``: create, list and revoke API keys (hashes in KV ``apikeys``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from contracts.ids import validate_id
from contracts.streams import KV_APIKEYS
from services.cli.client import nats_connection
from services.cli.output import CommandGroup, print_table
from services.common.auth.apikeys import ApiKeyStore
from services.common.config import BaseServiceSettings, load_settings

keys_app = CommandGroup(help="Create, list and revoke API keys.", no_args_is_help=True)
console = Console(stderr=True)
T = TypeVar("T")
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")]


def _with_store(data_dir: Path | None, action: Callable[[ApiKeyStore], Awaitable[T]]) -> T:
    settings = load_settings(BaseServiceSettings, data_dir)

    async def run() -> T:
        nc = await nats_connection(settings, "cli")
        try:
            kv = await nc.jetstream().key_value(settings.ns.bucket(KV_APIKEYS))
            return await action(ApiKeyStore(kv))
        finally:
            await nc.close()

    return asyncio.run(run())


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    try:
        validate_id(tenant, "tenant")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tenant") from exc
    record, plaintext = _with_store(data_dir, lambda store: store.create(tenant, name))
    console.print(f"key id [cyan]{record.key_id}[/] for tenant [cyan]{record.tenant}[/]; shown once, store it now:")
    typer.echo(plaintext)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (the 16 hex after gr_).")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key: it is refused from then on."""
    if not _with_store(data_dir, lambda store: store.revoke(key_id)):
        console.print(f"[red]no key {key_id}[/]")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


@keys_app.command("ls")
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    data_dir: DataDir = None,
) -> None:
    """List keys (ids, tenants, states; never the keys)."""
    table = Table("key id", "tenant", "name", "created", "revoked")
    for r in _with_store(data_dir, lambda store: store.list(tenant)):
        table.add_row(r.key_id, r.tenant, r.name, r.created_at.isoformat(timespec="seconds"), str(r.revoked_at or ""))
    print_table(table, "key id", "tenant")
