"""``gpurelay session start|show|frames|stop``: live sessions from the command line.

``frames`` streams a directory's images (sorted by name) or a video's frames (JPEG-encoded) over the
session socket at ``--fps`` through the client's ``sessions.connect`` (one socket protocol, the
client's), waits for each frame's ack, and shows the acks and the worker's latest progress live. The
session keeps running afterwards unless ``--stop`` is given.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import cv2
import typer
from gpurelay_client import AsyncSession, SessionError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from services.cli.client import as_dict, async_client, cli_settings, run
from services.cli.jobs import show_record
from services.cli.output import CommandGroup

sessions_app = CommandGroup(help="Start, feed, show and stop live sessions.", no_args_is_help=True)
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
JPEG_QUALITY = 90
console = Console()


@sessions_app.command("start")
def start(
    kind: Annotated[str, typer.Argument(help="splat or vlm.")],
    robot: Annotated[str | None, typer.Option("--robot", help="Match this robot's joint angles to frames.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="A param as KEY=JSON (repeatable).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Start a session; prints its id and URLs."""
    body: dict[str, Any] = {"kind": kind, "params": dict(parse_param(p) for p in param or [])}
    if robot:
        body["robot_id"] = robot
    settings = cli_settings(data_dir)

    async def call() -> dict[str, Any]:
        async with async_client(settings) as client:
            created: dict[str, Any] = await client.request("POST", "/v1/sessions", json=body)  # no socket opened
            return created

    session = run(call)
    console.print(f"[bold]{session['id']}[/] ({session['kind']}, {session['state']})", highlight=False)
    for name, url in session["urls"].items():
        if url:
            console.print(f"{name:8} {url}", soft_wrap=True, highlight=False, markup=False)


@sessions_app.command("show")
def show(session_id: str, data_dir: DataDir = None) -> None:
    """A session's status: state, frame counts, the worker's figures, cost so far."""
    settings = cli_settings(data_dir)

    async def call() -> dict[str, Any]:
        async with async_client(settings) as client:
            return as_dict(await client.sessions.get(session_id))

    session = run(call)
    console.print(session_table(session))


@sessions_app.command("stop")
def stop(session_id: str, data_dir: DataDir = None) -> None:
    """Ask the session to finish (its final outputs, then succeeded)."""
    settings = cli_settings(data_dir)

    async def call() -> None:
        async with async_client(settings) as client:
            await client.sessions.stop(session_id)
            show_record(as_dict(await client.jobs.get(session_id)), console)

    run(call)


@sessions_app.command("frames")
def frames(
    session_id: str,
    source: Annotated[Path, typer.Argument(exists=True, help="A directory of JPEG/PNG images, or a video file.")],
    fps: Annotated[float, typer.Option(min=0.1, max=240, help="Frames a second to send.")] = 10.0,
    stop_after: Annotated[bool, typer.Option("--stop", help="Stop the session after the last frame.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Stream images or a video's frames over the session socket, each acked; live progress."""
    settings = cli_settings(data_dir)

    async def call() -> dict[str, Any]:
        async with async_client(settings) as client:
            session = await client.sessions.connect(session_id)  # not `async with`: leaving it would stop it
            feed = _Feed(session)
            try:
                with Live(feed.table(), console=console, refresh_per_second=4, transient=False) as live:
                    await feed.send_all(read_frames(source), fps, live)
                    if stop_after:
                        await feed.stop(live)
            finally:
                await session.close()
            return feed.summary()

    summary = run(call)
    if summary["acked"] != summary["sent"]:
        raise typer.Exit(1)


def read_frames(source: Path) -> Iterator[bytes]:
    """The encoded frames of a directory (images as stored, sorted by name) or a video (as JPEG)."""
    if source.is_dir():
        for path in sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            yield path.read_bytes()
        return
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise typer.BadParameter(f"{source} is neither a directory of images nor a video OpenCV can read")
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                yield encoded.tobytes()
    finally:
        capture.release()


class _Feed:
    """A session's frames out through the client's socket, each answered (acked or refused) before the
    next, and the events read meanwhile, for the live display."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.sent = self.acked = 0
        self.errors: list[str] = []
        self.latest: dict[str, Any] = {}
        self.last_event = ""

    async def send_all(self, frames: Iterator[bytes], fps: float, live: Live) -> None:
        """Send each frame on a steady clock of ``fps`` and wait for its answer."""
        start = time.monotonic()
        for index, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, start + index / fps - time.monotonic()))
            self.sent += 1
            try:
                await self.session.send_frame(frame)
                self.acked += 1
            except SessionError as exc:  # a refused frame is answered too
                self.errors.append(f"{exc.code}: {exc.message}")
            self.show(live)

    async def stop(self, live: Live) -> None:
        """Ask the session to stop over its socket and wait for the gateway's answer, so the stop is in
        force before the command returns (a frame sent after it is refused)."""
        await self.session.stop()
        self.show(live)

    def show(self, live: Live) -> None:
        """Fold in the events read while answers were read (the worker's progress), and redraw."""
        for event in self.session.take_events():
            self.last_event = event.type
            if event.type == "job.progress":
                self.latest = event.envelope.data
        live.update(self.table())

    def table(self) -> Table:
        table = Table(show_header=False)
        table.add_row("frames sent", str(self.sent))
        table.add_row("acked", str(self.acked))
        table.add_row("refused", str(len(self.errors)))
        if self.latest:
            table.add_row(
                "progress", f"{100 * float(self.latest.get('fraction', 0.0)):.0f} % {self.latest.get('message') or ''}"
            )
            for key, value in (self.latest.get("metrics") or {}).items():
                table.add_row(f"  {key}", str(value))
        if self.last_event:
            table.add_row("last event", self.last_event)
        for error in self.errors[-3:]:
            table.add_row("[red]error[/]", error)
        return table

    def summary(self) -> dict[str, Any]:
        return {"sent": self.sent, "acked": self.acked, "errors": self.errors}


def session_table(session: dict[str, Any]) -> Table:
    """A session's status as a two-column table."""
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("id", str(session["id"]))
    table.add_row("kind", str(session["kind"]))
    table.add_row("state", f"{session['state']} ({session['status']})")
    table.add_row(
        "frames",
        f"{session['frames_received']} received, {session['frames_processed']} processed, "
        f"{session['frames_dropped']} dropped",
    )
    for key, value in (session.get("metrics") or {}).items():
        table.add_row(f"metrics.{key}", str(value))
    cost = session.get("cost") or {}
    table.add_row(
        "cost so far", f"{float(cost.get('gpu_seconds', 0.0)):.1f} GPU-s ≈ ${float(cost.get('estimated_usd', 0.0)):.4f}"
    )
    if error := session.get("error"):
        table.add_row("error", f"[red]{error.get('code', '')}[/]: {error.get('message', '')}")
    return table


def parse_param(text: str) -> tuple[str, Any]:
    """``KEY=JSON`` (a bare word is a string)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"{text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
