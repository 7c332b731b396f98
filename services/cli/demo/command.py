"""``gpurelay demo``: the main job end to end on the embedded stack, then everything stops.

Boots the dev stack in a data dir, starts a local webhook receiver that verifies every delivery's
Standard Webhooks signature, registers it, uploads two laps (synthetic unless files are given),
runs ``lap_compare`` with live progress, prints the result, downloads the job's artifacts into
``<output>/<job id>/`` (checked against their size and sha256, with the record as ``job.json``:
they outlive the stack, whose download links end with it), waits for the webhook deliveries of
the job and prints them. With ``serve`` the stack then keeps running until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpurelay_client import AsyncClient
from rich.console import Console
from rich.table import Table
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.cli.client import async_client
from services.cli.demo.media import write_lap_video
from services.cli.dev import DevStack, print_ready
from services.cli.submit import exit_code, submit_and_watch
from services.common.config import BaseServiceSettings
from services.common.http_server import EmbeddedHttpServer

console = Console(stderr=True)
TERMINAL = {"job.succeeded", "job.failed", "job.canceled"}
WEBHOOK_WAIT_S = 30.0


@dataclass
class WebhookReceiver:
    """Receives deliveries on loopback and checks each signature with the ``standardwebhooks`` library."""

    secret: str = ""
    received: list[tuple[str, str, bool]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
            verified = True
        except Exception:  # noqa: BLE001 - any failure is an unverified delivery, shown as such
            verified = False
        event = json.loads(body)
        self.received.append((event.get("type", "?"), request.headers.get("webhook-id", ""), verified))
        if event.get("type") in TERMINAL:
            self.done.set()
        return Response(status_code=204)

    def app(self) -> Any:
        return Starlette(routes=[Route("/hook", self.handle, methods=["POST"])])


def _deliveries_table(receiver: WebhookReceiver) -> Table:
    """One row per event type, in the order they arrived: how many, and whether every signature held."""
    table = Table("event type", "deliveries", "signatures", title="webhook deliveries received")
    rows: dict[str, list[bool]] = {}
    for event_type, _, verified in receiver.received:
        rows.setdefault(event_type, []).append(verified)
    for event_type, checks in rows.items():
        table.add_row(event_type, str(len(checks)), "[green]all valid[/]" if all(checks) else "[red]INVALID[/]")
    return table


async def save_artifacts(client: AsyncClient, record: dict[str, Any], folder: Path) -> list[Path]:
    """Download each artifact of ``record`` into ``folder`` (the client checks each one's size and sha256
    against the record, and keeps no file that differs); write the record beside them as ``job.json``."""
    saved = await client.jobs.download_artifacts(record["id"], folder)
    await asyncio.to_thread((folder / "job.json").write_text, json.dumps(record, indent=2))
    return saved


def _print_saved(job_id: str, saved: list[Path]) -> None:
    if saved:
        console.print(f"artifacts of {job_id} saved (sizes and sha256 checked), with the job record as job.json:")
    for path in saved:
        console.print(f"  {path}", soft_wrap=True, highlight=False, markup=False)


async def _until_signal() -> None:
    """Return on SIGINT (Ctrl-C) or SIGTERM."""
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def run_demo(
    data_dir: Path, video: Path | None, reference: Path | None, output: Path, serve: bool = False
) -> int:
    """The demo; returns the exit code (0 when the job succeeded and every delivery verified)."""
    stack = DevStack(data_dir=data_dir, port=0)
    receiver = WebhookReceiver()
    hook_server = EmbeddedHttpServer("127.0.0.1", 0)
    try:
        env = await stack.start()
        print_ready(env)
        await hook_server.start(receiver.app())
        media = data_dir / "demo-media"
        media.mkdir(parents=True, exist_ok=True)
        if video is None:
            video = await asyncio.to_thread(write_lap_video, media / "lap.mp4", 3.0)
            reference = await asyncio.to_thread(write_lap_video, media / "reference.mp4", 3.5, wobble=0.02)
            console.print(f"made two synthetic laps under [cyan]{media}[/]")
        settings = BaseServiceSettings(
            url=env["GPURELAY_URL"], api_key=env["GPURELAY_API_KEY"], nats_url=env["GPURELAY_NATS_URL"]
        )
        async with async_client(settings) as client:
            hook = await client.webhooks.create(f"{hook_server.url}/hook", ["job.*"])
            receiver.secret = hook.secret
            console.print(f"webhook receiver on [cyan]{hook_server.url}/hook[/] (signatures checked)")
            inputs = {"video": video, **({"reference": reference} if reference else {})}
            record = await submit_and_watch(client, "lap_compare", inputs, {}, True) or {}
            saved = await save_artifacts(client, record, output / record["id"]) if record.get("artifacts") else []
        code = exit_code(record)
        try:
            await asyncio.wait_for(receiver.done.wait(), WEBHOOK_WAIT_S)
        except TimeoutError:
            console.print(f"[red]no terminal webhook delivery within {WEBHOOK_WAIT_S:.0f} s[/]")
            code = code or 1
        console.print(_deliveries_table(receiver))
        if not all(verified for _, _, verified in receiver.received):
            code = code or 1
        _print_saved(str(record.get("id")), saved)
        if serve:
            console.print(f"the stack keeps serving on [cyan]{env['GPURELAY_URL']}[/] (--serve); Ctrl-C stops the demo")
            await _until_signal()
        elif saved:
            console.print("the download links above end with the stack, which stops now (--serve keeps it running)")
        return code
    finally:
        await hook_server.stop()
        await stack.stop()
