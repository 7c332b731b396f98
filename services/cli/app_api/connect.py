"""A Python-client ``Client`` from the CLI's settings for the App API verbs, and its errors as the CLI
shows them (the problem printed on stderr, exit 1; no API key: exit 2).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from gpurelay_client import Client, GpurelayError
from pydantic import BaseModel

from services.cli.client import cli_settings, show_failure, sync_client


@contextlib.contextmanager
def api_client(data_dir: Path | None) -> Iterator[Client]:
    """A blocking client with the CLI's URL and API key; an error of the client is printed and exits 1."""
    try:
        with sync_client(cli_settings(data_dir)) as client:
            yield client
    except GpurelayError as exc:
        show_failure(exc)
        raise typer.Exit(1) from None


def echo_json(model: BaseModel | dict[str, Any]) -> None:
    """Print ``model`` as indented JSON on stdout (for scripts)."""
    data = model.model_dump(mode="json", by_alias=True) if isinstance(model, BaseModel) else model
    typer.echo(json.dumps(data, indent=2))


def utc(moment: datetime | None) -> datetime | None:
    """A time from the command line, in UTC when it names no zone."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)
