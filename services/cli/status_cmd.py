"""The ``gpurelay status`` command: :func:`services.cli.status.collect` as rich tables, or ``--json``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli.client import nats_connection
from services.cli.jobs import human_size
from services.cli.output import print_table
from services.cli.status import collect
from services.common.config import BaseServiceSettings, load_settings


class StatusSettings(BaseServiceSettings):
    """The CLI's settings and the dispatcher's health URL (``gpurelay dev`` writes it to dev.env)."""

    dispatcher_url: str | None = None


def _age(seconds: float | None) -> str:
    """``3d 4h``, ``12m 5s``, ``-`` for none."""
    if seconds is None:
        return "-"
    s = int(seconds)
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit} {(s % size) // small_size}{smaller}"
    return f"{s}s"


def _n(value: Any) -> str:
    return "" if value is None else str(value)


def tables(report: dict[str, Any]) -> list[Table]:
    """The report as tables: streams, consumers, KV, dispatch, the local pool, failing webhooks."""
    streams = Table("stream", "messages", "bytes", "oldest", "consumers", title="streams")
    for s in report["streams"]:
        streams.add_row(
            s["stream"], str(s["messages"]), human_size(s["bytes"]), _age(s["oldest_age_s"]), str(s["consumers"])
        )
    consumers = Table("stream", "consumer", "pending (lag)", "ack pending", "redelivered", title="consumers")
    for c in report["consumers"]:
        lag = c["num_pending"]
        style = "yellow" if lag else ""
        consumers.add_row(c["stream"], c["consumer"], f"[{style}]{_n(lag)}[/]" if style else _n(lag),
                          _n(c["num_ack_pending"]), _n(c["num_redelivered"]))  # fmt: skip
    kv = Table("bucket", "keys", "bytes", title="KV buckets")
    for b in report["kv"]:
        kv.add_row(b["bucket"], str(b["keys"]), human_size(b["bytes"]))
    dispatch = Table("kind", "tickets", "running", "waiting", title="dispatch (per kind)")
    for d in report["dispatch"]:
        kind = d["kind"] if d["consumer"] else f"{d['kind']} [red](no dispatcher)[/]"
        dispatch.add_row(kind, str(d["tickets"]), str(d["running"]), str(d["waiting"]))
    out = [streams, consumers, kv, dispatch]
    if (pool := report.get("local_pool")) is not None:
        table = Table(*pool.keys(), title="local pool")
        table.add_row(*(str(v) for v in pool.values()))
        out.append(table)
    failing = Table("tenant", "endpoint", "dead letters", "retrying", "queued", title="webhook endpoints failing")
    for w in report["webhooks_failing"]:
        failing.add_row(
            w["tenant"], w["endpoint"], f"[red]{w['dead_letters']}[/]", str(w["retrying"]), str(w["queued"])
        )
    out.append(failing)
    return out


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    dispatcher_url: Annotated[
        str | None,
        typer.Option(
            envvar="GPURELAY_DISPATCHER_URL", help="The dispatcher's health URL base (pool occupancy; dev.env has one)."
        ),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")] = None,
) -> None:
    """Streams, consumers and their lag, KV sizes, dispatch per kind, the local pool, failing webhooks."""
    settings = load_settings(StatusSettings, data_dir)
    dispatcher_url = dispatcher_url or settings.dispatcher_url

    async def gather() -> dict[str, Any]:
        nc = await nats_connection(settings, "cli-status")
        try:
            return await collect(nc, settings, dispatcher_url)
        finally:
            await nc.close()

    report = asyncio.run(gather())
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console = Console()
    for table in tables(report):
        print_table(table, "stream", "consumer", "bucket", "kind", "tenant", "endpoint", console=console)
