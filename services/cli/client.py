"""The CLI's glue to the Python client: every HTTP call of ``gpurelay`` goes through ``gpurelay_client``
(clients/python, one client, not two); here are its settings, and its errors as the CLI shows them.

Settings come from ``GPURELAY_*`` or ``<data dir>/dev.env`` (``GPURELAY_URL``, ``GPURELAY_API_KEY``,
``GPURELAY_EVENTS_URL``). An error answer is the client's :class:`~gpurelay_client.APIError` with its
RFC 9457 problem; :func:`run` prints it (status, title, detail, each field at fault) and exits 1, so
commands only write the happy path. The operator's commands that speak NATS themselves (replay, status,
keys) connect through :func:`nats_connection`, which gives up after :data:`NATS_WAIT_S` and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from gpurelay_client import APIConnectionError, APIError, AsyncClient, Client, GpurelayError
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel
from rich.console import Console

from contracts.job_parts import JobStatus
from contracts.specs.jobs import JobKind
from services.common.config import BaseServiceSettings, load_settings
from services.common.nats.connection import connect

if TYPE_CHECKING:
    from gpurelay_client._models import JobKind as KindName
    from gpurelay_client._models import JobStatus as StatusName

T = TypeVar("T")
err_console = Console(stderr=True)
MAX_RETRIES = 2
"""Retries of one request (a 429/503 after its ``Retry-After``, a lost connection when safe to resend)."""
NATS_WAIT_S = 15.0
"""How long a command tries to reach NATS before it exits 1 (a service's connection tries for ever)."""


def cli_settings(data_dir: Path | None) -> BaseServiceSettings:
    """The CLI's settings (environment first, then ``<data dir>/dev.env``)."""
    return load_settings(BaseServiceSettings, data_dir)


def api_key(settings: BaseServiceSettings) -> str:
    """The CLI's API key; without one, say how to get one and exit 2."""
    if settings.api_key is None or not settings.api_key.get_secret_value():
        err_console.print("[red]no API key[/]: set GPURELAY_API_KEY or run `gpurelay dev` (writes dev.env)")
        raise typer.Exit(2)
    return settings.api_key.get_secret_value()


def async_client(settings: BaseServiceSettings, timeout_s: float = 30.0) -> AsyncClient:
    """An asyncio client with the CLI's URL, events URL and API key (use it as ``async with``)."""
    key = api_key(settings)
    return AsyncClient(
        settings.url, api_key=key, events_url=settings.events_url, timeout=timeout_s, max_retries=MAX_RETRIES
    )


def sync_client(settings: BaseServiceSettings, timeout_s: float = 30.0) -> Client:
    """The blocking twin of :func:`async_client`."""
    key = api_key(settings)
    return Client(settings.url, api_key=key, events_url=settings.events_url, timeout=timeout_s, max_retries=MAX_RETRIES)


def show_failure(exc: GpurelayError, console: Console = err_console) -> None:
    """Print what failed: an error answer's problem and each field at fault, an unreachable gateway, or
    another failure of the client (a stream lost, a checksum that does not match)."""
    if isinstance(exc, APIError):
        console.print(f"[bold red]error {exc.status}[/] {exc.title}: {exc.detail}")
        for e in exc.errors:
            loc = ".".join(str(part) for part in e.loc)
            console.print(f"  [red]•[/] {loc}: {e.msg}")
    elif isinstance(exc, APIConnectionError):
        console.print(f"[bold red]cannot reach the gateway[/]: {exc}")
    else:
        console.print(f"[bold red]error[/] {exc}")


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; the client's errors are printed and exit 1, Ctrl-C exits 130."""
    try:
        return asyncio.run(make())
    except GpurelayError as exc:
        show_failure(exc)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("interrupted (a submitted job keeps running: `gpurelay jobs show ID`)")
        raise typer.Exit(130) from None


async def nats_connection(settings: BaseServiceSettings, name: str) -> NatsClient:
    """A connection as the services make it, once it is made; NATS unreachable for :data:`NATS_WAIT_S`
    (the stack down, a wrong ``GPURELAY_NATS_URL``): say so and exit 1, instead of retrying for ever."""
    try:
        async with asyncio.timeout(NATS_WAIT_S):
            return await connect(settings, name)
    except TimeoutError:
        err_console.print(
            f"[bold red]cannot reach NATS[/] at {settings.nats_url} within {NATS_WAIT_S:g} s: is the stack "
            "running? (GPURELAY_NATS_URL, or --data-dir for a `gpurelay dev` stack's dev.env)"
        )
        raise typer.Exit(1) from None


def as_dict(model: BaseModel) -> dict[str, Any]:
    """A model the client read as the JSON the gateway sent (the fields it sent, no others), for printing."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


def status_name(status: JobStatus | None) -> StatusName | None:
    """A job status as the client's literal (the same values: both come from the API's schema)."""
    return None if status is None else status.value


def kind_name(kind: JobKind | None) -> KindName | None:
    """A job kind as the client's literal (the same values: both come from the API's schema)."""
    return None if kind is None else kind.value
