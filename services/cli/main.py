"""The ``gpurelay`` command line (typer + rich).

Every command but ``dev`` and ``demo`` reads its settings from ``GPURELAY_*`` variables or from
``<data dir>/dev.env``, which ``gpurelay dev`` writes once the stack is ready.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.cli.app_api.cors import cors_app
from services.cli.app_api.listing import cancel, list_sessions
from services.cli.app_api.robots import robots_app
from services.cli.app_api.tokens import tokens_app
from services.cli.app_api.usage import usage
from services.cli.dev import DataDirInUseError, DevStack, print_ready, run_until_signal
from services.cli.jobs import jobs_app
from services.cli.keys import keys_app
from services.cli.nats_cmd import nats_app
from services.cli.output import CommandGroup
from services.cli.replay.command import replay
from services.cli.replay.dlq import dlq_app
from services.cli.serve import serve_app
from services.cli.session import recordings  # noqa: F401 - registers `session export` and `session replay`
from services.cli.session.live import sessions_app
from services.cli.status_cmd import status
from services.cli.submit import submit
from services.common.config import BaseServiceSettings
from services.common.observability.tracing import setup_tracing

app = CommandGroup(
    name="gpurelay", help="Run GPU jobs on media and robot data, and watch them live.", no_args_is_help=True
)
console = Console(stderr=True)
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")
app.add_typer(sessions_app, name="session")
app.add_typer(sessions_app, name="sessions", hidden=True)  # ``gpurelay sessions ls`` reads naturally too
app.add_typer(tokens_app, name="tokens")
app.add_typer(robots_app, name="robots")
app.add_typer(cors_app, name="cors")
jobs_app.command("cancel")(cancel)
sessions_app.command("ls")(list_sessions)
app.command()(usage)
app.add_typer(dlq_app, name="dlq")
app.add_typer(nats_app, name="nats")
app.command()(submit)
app.command()(replay)
app.command()(status)
app.registered_commands += serve_app.registered_commands

DataDir = Annotated[Path, typer.Option("--data-dir", help="Where the embedded stack keeps its data.")]
DemoOutput = Annotated[Path, typer.Option("--output", help="Save the job's artifacts in OUTPUT/<job id>/.")]
DEMO_OUTPUT = Path("gpurelay-demo-output")
"""Where ``gpurelay demo`` saves artifacts by default (in the working directory; git-ignored)."""


@app.command()
def dev(
    data_dir: DataDir = Path(".gpurelay"),
    port: Annotated[int, typer.Option(help="Gateway port on loopback (0: any free port).")] = 8000,
    nats_port: Annotated[int, typer.Option(help="NATS port on loopback (0: any free port).")] = 0,
) -> None:
    """Run the whole embedded stack in the foreground until Ctrl-C (SIGINT) or SIGTERM."""
    stack = DevStack(data_dir=data_dir.resolve(), port=port, nats_port=nats_port)
    setup_tracing(BaseServiceSettings(), "dev")  # GPURELAY_OTLP_ENDPOINT: one process, one service name
    try:
        asyncio.run(run_until_signal(stack, on_ready=print_ready))
    except DataDirInUseError as exc:
        console.print(f"[red]gpurelay dev refused[/]: {exc}")
        raise typer.Exit(1) from None
    console.print("gpurelay dev stopped")


@app.command()
def demo(
    video: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, help="A lap video (default: synthetic).")
    ] = None,
    reference: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, help="A second lap to compare with.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Keep the demo's data here (default: a temp dir).")
    ] = None,
    output: DemoOutput = DEMO_OUTPUT,
    serve: Annotated[bool, typer.Option("--serve", help="Keep the stack running after the demo until Ctrl-C.")] = False,
) -> None:
    """Run lap_compare end to end on the embedded stack, with a verifying webhook receiver, then stop.

    The job's artifacts (overlay.mp4, overlay.webm, metrics.json, manifest.json) are saved under OUTPUT.
    """
    from services.cli.demo.command import run_demo

    if data_dir is not None:
        try:
            code = asyncio.run(run_demo(data_dir.resolve(), video, reference, output.resolve(), serve))
        except DataDirInUseError as exc:
            console.print(f"[red]gpurelay demo refused[/]: {exc}")
            raise typer.Exit(1) from None
    else:
        with tempfile.TemporaryDirectory(prefix="gpurelay-demo-") as tmp:
            code = asyncio.run(run_demo(Path(tmp), video, reference, output.resolve(), serve))
    if code == 0:
        console.print("[bold green]demo finished[/]: lap_compare ran end to end and the stack stopped cleanly")
    raise typer.Exit(code)


@app.command()
def schema(
    out: Annotated[
        Path | None, typer.Option(help="Directory for the JSON Schemas (default: contracts/schema).")
    ] = None,
    check: Annotated[bool, typer.Option(help="Only report drift; exit 1 when the files differ.")] = False,
) -> None:
    """Export the JSON Schema of every contract (contracts/schema/) and docs/asyncapi.json."""
    from contracts.documents.asyncapi import ASYNCAPI
    from contracts.documents.schema_export import SCHEMA_DIR, check_schemas, write_schemas

    target = out or SCHEMA_DIR
    if check:
        drift = check_schemas(target) + (["docs/asyncapi.json"] if ASYNCAPI.drifted() else [])
        for name in drift:
            console.print(f"[red]drift[/] {name}")
        raise typer.Exit(1 if drift else 0)
    for path in [*write_schemas(target), ASYNCAPI.write()]:
        console.print(f"wrote {path}")


@app.command()
def openapi(
    check: Annotated[bool, typer.Option(help="Only report drift; exit 1 when docs/openapi.json differs.")] = False,
) -> None:
    """Export the OpenAPI document of the gateway and the notifier's routes to docs/openapi.json."""
    from services.cli.openapi import OPENAPI

    if check:
        drifted = OPENAPI.drifted()
        console.print(f"[red]drift[/] {OPENAPI.path}" if drifted else "docs/openapi.json is up to date")
        raise typer.Exit(1 if drifted else 0)
    console.print(f"wrote {OPENAPI.write()}")


@app.command()
def version() -> None:
    """Print the gpurelay and contracts versions."""
    from importlib.metadata import version as dist_version

    from contracts import CONTRACTS_VERSION

    typer.echo(f"gpurelay {dist_version('gpurelay')} (contracts {CONTRACTS_VERSION})")


if __name__ == "__main__":
    app()
