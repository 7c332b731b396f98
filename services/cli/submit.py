"""``gpurelay submit KIND FILE...``: upload, create the job, follow it live, print the result.

Everything goes through the Python client (``gpurelay_client``): each file is uploaded through its
pre-signed URL (``uploads.upload``: streamed in chunks, no API key sent to storage), completed, and
fills the kind's next input name. With ``--watch`` (the default) the job's events (``jobs.stream``,
resumed with ``Last-Event-ID`` if it drops) drive a live progress bar; after the terminal event the
record (status, attempts, timings, cost, result, artifacts with download URLs) is read and printed.
Exit code: 0 succeeded, 1 failed or canceled, 2 bad usage.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from gpurelay_client import APIError, AsyncClient, GpurelayError, StreamError
from gpurelay_client._uploads import CONTENT_TYPES  # the suffixes the client knows, checked before uploading
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from contracts.specs.jobs import BATCH_KINDS, SPEC_MODELS, JobKind
from services.cli.client import as_dict, async_client, cli_settings, run
from services.cli.jobs import show_record
from services.common.queue_place import queue_place_text

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
STATUS_TEXT = {"job.queued": "queued", "job.dispatched": "dispatched", "job.started": "running"}


def input_names(kind: str) -> tuple[list[str], list[str]]:
    """The input names of a batch ``kind`` in order, and those that are required."""
    model = SPEC_MODELS[JobKind(kind)].model_fields["inputs"].annotation
    fields = getattr(model, "model_fields", {})
    return list(fields), [name for name, f in fields.items() if f.is_required()]


def content_type(path: Path) -> str:
    """The content type of ``path`` from its suffix; a usage error for an unknown one."""
    if (found := CONTENT_TYPES.get(path.suffix.lower())) is None:
        known = ", ".join(sorted(CONTENT_TYPES))
        raise typer.BadParameter(f"{path.name}: unknown file type (known: {known})", param_hint="FILE")
    return found


def parse_params(kind: str, pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON is that value (``8`` → 8, ``true`` → True).

    They are checked against the kind's parameter model here, before anything is uploaded.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not k=v", param_hint="--param")
        try:
            params[key.strip()] = json.loads(raw)
        except ValueError:
            params[key.strip()] = raw
    model: Any = SPEC_MODELS[JobKind(kind)].model_fields["params"].annotation
    try:
        TypeAdapter(model).validate_python(params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or kind}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems, param_hint="--param") from None
    return params


def plan_inputs(kind: str, files: list[Path]) -> dict[str, Path]:
    """Map files to the kind's input names in order; usage errors for a wrong kind or count."""
    batch = sorted(k.value for k in BATCH_KINDS)
    if kind not in batch:
        raise typer.BadParameter(f"{kind!r} is not a batch kind; choose one of {', '.join(batch)}", param_hint="KIND")
    names, required = input_names(kind)
    if len(files) > len(names) or len(files) < len(required):
        want = " ".join(n if n in required else f"[{n}]" for n in names)
        raise typer.BadParameter(f"{kind} takes {want} ({len(files)} files given)", param_hint="FILE")
    for path in files:
        content_type(path)
    return dict(zip(names, files, strict=False))


async def upload(client: AsyncClient, path: Path, progress: Progress) -> str:
    """Upload one file through its pre-signed URL and complete it, with a progress bar; the upload id."""
    size = (await asyncio.to_thread(path.stat)).st_size
    task = progress.add_task(f"upload {path.name}", total=size)
    done = await client.uploads.upload(
        path, content_type=content_type(path), on_progress=lambda sent, _total: progress.update(task, completed=sent)
    )
    return done.id


def _describe(event_type: str, data: dict[str, Any]) -> str | None:
    """The progress bar's text for an event (``None``: leave it)."""
    if event_type == "job.progress":
        parts = [p for p in (data.get("stage"), data.get("message")) if p]
        return ": ".join(parts) or "running"
    if event_type == "job.stage":
        return f"stage {data.get('name')} ({int(data.get('index', 0)) + 1}/{data.get('count')}) {data.get('status')}"
    if event_type == "job.position" or (event_type == "job.queued" and data.get("position") is not None):
        return f"queued: {queue_place_text(data)}"
    if event_type == "job.dispatched":
        return f"dispatched to {data.get('backend')}" + (f" ({data['gpu']})" if data.get("gpu") else "")
    return STATUS_TEXT.get(event_type)


async def watch(client: AsyncClient, job_id: str, console: Console) -> dict[str, Any]:
    """Follow the job's events with a live progress bar; returns the terminal envelope."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    terminal: dict[str, Any] = {}
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("waiting for the job", total=1.0)
        try:
            async for event in client.jobs.stream(job_id):
                terminal = as_dict(event.envelope)
                _show(progress, task, event.type, terminal.get("data") or {})
        except (APIError, StreamError) as exc:
            raise _events_hint(exc, client.options.job_events_url(job_id)) from None
    return terminal


def _events_hint(exc: APIError | StreamError, url: str) -> GpurelayError:
    """The error, saying where the events were asked for (the notifier may have its own origin)."""
    hint = f" (events from {url}; GPURELAY_EVENTS_URL sets where the notifier is)"
    if isinstance(exc, APIError):
        return type(exc)(exc.status, exc.problem.model_copy(update={"detail": exc.detail + hint}), exc.headers)
    return StreamError(f"{exc}{hint}")


def _show(progress: Progress, task: TaskID, event_type: str, data: dict[str, Any]) -> None:
    """Reflect one event in the progress bar (or print it above the bar)."""
    if (text := _describe(event_type, data)) is not None:
        progress.update(task, description=text)
    if event_type == "job.progress":
        progress.update(task, completed=float(data.get("fraction", 0.0)))
    elif event_type == "job.retrying":
        progress.update(task, completed=0.0, description=f"retrying (attempt {data.get('next_attempt')})")
        progress.console.print(f"[yellow]attempt failed[/] {data.get('reason')}: {data.get('message', '')}")
    elif event_type == "job.artifact":
        progress.console.print(f"artifact [cyan]{data.get('name')}[/] ({data.get('size', 0)} bytes)")
    elif event_type == "job.log":
        progress.console.print(f"[dim]{data.get('level', 'info')}[/] {data.get('message', '')}")
    elif event_type == "job.succeeded":
        progress.update(task, completed=1.0, description="[green]succeeded[/]")
    elif event_type in ("job.failed", "job.canceled"):
        progress.update(task, description=f"[red]{event_type.removeprefix('job.')}[/]")


async def final_record(
    client: AsyncClient, job_id: str, terminal: dict[str, Any], settle_s: float = 3.0
) -> dict[str, Any]:
    """The record once the dispatcher folded the terminal event (what the event says, if it lags)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    while True:
        job = as_dict(await client.jobs.get(job_id))
        if job.get("status") in TERMINAL_STATUSES or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    if job.get("status") not in TERMINAL_STATUSES and terminal:
        data = terminal.get("data") or {}
        job["status"] = str(terminal.get("type", "")).removeprefix("job.")
        job["error"] = data.get("error", job.get("error"))
        job["result"] = data.get("result", job.get("result"))
        job["artifacts"] = job.get("artifacts") or list(data.get("artifacts", []))
    return job


async def submit_files(
    client: AsyncClient, kind: str, inputs: dict[str, Path], params: dict[str, Any], watch_it: bool
) -> int:
    """Upload, submit and (``watch_it``) follow a job; the exit code (0 succeeded or not watched, else 1)."""
    record = await submit_and_watch(client, kind, inputs, params, watch_it)
    return 0 if record is None else exit_code(record)


async def submit_and_watch(
    client: AsyncClient, kind: str, inputs: dict[str, Path], params: dict[str, Any], watch_it: bool
) -> dict[str, Any] | None:
    """Upload ``inputs``, submit the job, print its id; with ``watch_it`` follow it and return its final record."""
    console = Console(stderr=True)
    refs: dict[str, dict[str, str]] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console
    ) as progress:
        for name, path in inputs.items():
            refs[name] = {"upload_id": await upload(client, path, progress)}
    job = await client.jobs.create(kind, inputs=refs, params=params)
    typer.echo(job.id)
    if not watch_it:
        return None
    terminal = await watch(client, job.id, console)
    record = await final_record(client, job.id, terminal)
    show_record(record)
    return record


def exit_code(record: dict[str, Any]) -> int:
    """0 for a job that succeeded; else 1, after saying why on stderr."""
    if record.get("status") == "succeeded":
        return 0
    error = record.get("error") or {}
    Console(stderr=True).print(
        f"[bold red]job {record.get('status')}[/] {error.get('code', '')}: {error.get('message', '')}"
    )
    return 1


def submit(
    kind: Annotated[str, typer.Argument(help="lap_compare, pose or nerf.")],
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, readable=True, help="Files, in input order.")
    ],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="k=v (JSON values), repeatable.")] = None,
    watch_it: Annotated[bool, typer.Option("--watch/--no-watch", help="Follow the job until it ends.")] = True,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")] = None,
) -> None:
    """Upload FILEs, submit a KIND job on them and (by default) watch it live to the end.

    lap_compare takes VIDEO [REFERENCE], pose VIDEO, nerf IMAGES (a zip). Exit code 0 when the
    job succeeded, 1 when it failed or was canceled, 2 for bad usage.
    """
    inputs = plan_inputs(kind, files)
    params = parse_params(kind, param or [])
    settings = cli_settings(data_dir)

    async def go() -> int:
        async with async_client(settings) as client:
            return await submit_files(client, kind, inputs, params, watch_it)

    raise typer.Exit(run(go))
