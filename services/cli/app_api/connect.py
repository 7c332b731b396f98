"""A Python-client ``Client`` from the CLI's settings, and its errors as the CLI shows them (the problem
printed on stderr, exit 1; no API key: exit 2).

``gpurelay_client`` (clients/python) is imported when a verb runs, not when the CLI loads: an image
that installs only the server package still runs ``gpurelay gateway`` and the other services.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import BaseModel

from services.cli.client import ApiError, cli_settings, err_console

if TYPE_CHECKING:
    from gpurelay_client import Client


@contextlib.contextmanager
def api_client(data_dir: Path | None) -> Iterator[Client]:
    """A client with the CLI's URL and API key; an API error is printed and exits 1."""
    from gpurelay_client import APIError, Client, GpurelayError

    settings = cli_settings(data_dir)
    if settings.api_key is None or not settings.api_key.get_secret_value():
        err_console.print("[red]no API key[/]: set GPURELAY_API_KEY or run `gpurelay dev` (writes dev.env)")
        raise typer.Exit(2)
    try:
        with Client(settings.url, api_key=settings.api_key.get_secret_value(), max_retries=2) as client:
            yield client
    except APIError as exc:
        errors = [e.model_dump() for e in exc.errors]
        ApiError(exc.status, exc.title, exc.detail, errors).show()
        raise typer.Exit(1) from None
    except GpurelayError as exc:
        err_console.print(f"[bold red]error[/] {exc}")
        raise typer.Exit(1) from None


def echo_json(model: BaseModel | dict[str, Any]) -> None:
    """Print ``model`` as indented JSON on stdout (for scripts)."""
    data = model.model_dump(mode="json", by_alias=True) if isinstance(model, BaseModel) else model
    typer.echo(json.dumps(data, indent=2))


def utc(moment: datetime | None) -> datetime | None:
    """A time from the command line, in UTC when it names no zone."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)
