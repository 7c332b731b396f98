"""``gpurelay session export|replay``: a session's recording as a file, or replayed against other params.

``export`` submits a ``session_export`` job, follows it live and downloads the file it made (the Python
client checks its size and sha256 against the job's record) to ``--output`` (a file, or a folder to put it in;
default: the file's own name here). ``replay`` starts a session fed from the recording with the
params given changed; with ``--wait`` it follows the replay to its end and prints the comparison
with the replayed session (``comparison.json``), figure by figure.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from gpurelay_client import AsyncClient
from rich.console import Console
from rich.table import Table

from services.cli.client import async_client, cli_settings, run
from services.cli.session.live import DataDir, parse_param, sessions_app
from services.cli.submit import exit_code, final_record, watch

console = Console(stderr=True)
Params = Annotated[list[str] | None, typer.Option("--param", "-p", help="A param as KEY=JSON (repeatable).")]
FIGURES = (
    "frames", "frames_per_s", "time_to_first_snapshot_s", "snapshots", "gaussians", "psnr", "results",
    "latency_ms_p50", "latency_ms_p99", "alerts",
)  # fmt: skip


async def followed(client: AsyncClient, job_id: str) -> dict[str, Any]:
    """The job's record once it ended (followed live on stderr)."""
    return await final_record(client, job_id, await watch(client, job_id, console))


async def fetch(client: AsyncClient, job_id: str, name: str, path: Path) -> Path:
    """Download the job's artifact ``name`` to ``path`` (checked against its record's size and sha256 by the
    client, into a folder beside ``path``, then moved there)."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".gpurelay-download-") as folder:
        (downloaded,) = await client.jobs.download_artifacts(job_id, folder, names=[name])
        downloaded.replace(path)
    return path


async def artifact_json(client: AsyncClient, job_id: str, name: str) -> Any:
    """The job's JSON artifact ``name``, downloaded (and checked) into a temporary folder and read."""
    with tempfile.TemporaryDirectory(prefix="gpurelay-") as folder:
        (downloaded,) = await client.jobs.download_artifacts(job_id, folder, names=[name])
        return json.loads(downloaded.read_text())


@sessions_app.command("export")
def export(
    session_id: str,
    fmt: Annotated[str, typer.Option("--format", "-f", help="lerobot, mcap or rrd.")] = "lerobot",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="A file, or a folder for it.")] = None,
    param: Params = None,
    data_dir: DataDir = None,
) -> None:
    """Export a session's recording (a LeRobot dataset zipped, an MCAP or a Rerun file) and download it."""
    params = {"session_id": session_id, "format": fmt, **dict(parse_param(p) for p in param or [])}
    settings = cli_settings(data_dir)

    async def go() -> int:
        async with async_client(settings) as client:
            job = await client.jobs.create("session_export", params=params)
            record = await followed(client, job.id)
            if (code := exit_code(record)) != 0:
                return code
            (artifact,) = record["artifacts"]
            name = str(artifact["name"]).rpartition("/")[2]
            target = (output / name if output.is_dir() else output) if output is not None else Path(name)
            saved = await fetch(client, job.id, artifact["name"], target)
            result = record.get("result") or {}
            console.print(f"{result.get('frames')} frames, {result.get('episodes')} episode(s) → {saved}")
            typer.echo(str(saved))
            return 0

    raise typer.Exit(run(go))


@sessions_app.command("replay")
def replay(
    session_id: str,
    param: Params = None,
    speed: Annotated[str, typer.Option(help="max, or a multiple of the recorded timing (1 = as recorded).")] = "1",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the replay and show the comparison.")] = True,
    data_dir: DataDir = None,
) -> None:
    """Start a session fed from SESSION_ID's recording with the params given changed; print its id."""
    pace: float | str = speed if speed == "max" else float(speed)
    body = {"params": dict(parse_param(p) for p in param or []), "speed": pace}
    settings = cli_settings(data_dir)

    async def go() -> int:
        async with async_client(settings) as client:
            path = f"/v1/sessions/{quote(session_id, safe='')}/replay"
            started: dict[str, Any] = await client.request("POST", path, json=body)
            typer.echo(started["id"])
            if not wait:
                return 0
            record = await followed(client, started["id"])
            if (code := exit_code(record)) != 0:
                return code
            found = [a for a in record.get("artifacts") or [] if a["name"] == "comparison.json"]
            if not found:
                console.print("[yellow]the replay left no comparison[/]")
                return 1
            comparison = await artifact_json(client, started["id"], "comparison.json")
            Console().print(comparison_table(comparison))
            return 0

    raise typer.Exit(run(go))


def comparison_table(comparison: dict[str, Any]) -> Table:
    """Both runs' figures, a row each (those neither run has left out), and the params that differ."""
    original, replayed = comparison["original"], comparison["replay"]
    table = Table(title=f"{replayed['session_id']} against {original['session_id']} ({comparison['kind']})")
    for column in ("figure", "original", "replay"):
        table.add_column(column)
    for name in FIGURES:
        values = (original.get(name), replayed.get(name))
        if any(v is not None for v in values):
            table.add_row(name, *("–" if v is None else str(v) for v in values))
    changed = {k: v for k, v in replayed["params"].items() if original["params"].get(k) != v}
    table.add_row("params changed", "", json.dumps(changed))
    return table
