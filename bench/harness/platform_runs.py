"""The platform's own cost on the embedded stack (``gpurelay dev``): what a job and an idle stack cost NATS.

:func:`embedded_stack` starts :class:`~services.cli.dev.DevStack` with a :class:`MessageCounter` on its
server and :data:`ROUTES` (``lap_compare`` as in ``deploy/routes.yaml``, ``pose`` a no-op);
:func:`job_only` counts one no-op ``pose`` job from ``POST /v1/jobs`` (its input uploaded before) to its
settled end (its record terminal, its queue entry deleted, its run time tallied, its events' held
fan-out ack sent: the whole of its tail, which a window ending at its record cut at random),
:func:`submitted` counts a ``lap_compare`` job as ``gpurelay submit`` runs it (two uploads,
the job, one SSE follower) and :func:`at_rest` counts a stretch with no job and no client. Shared by
``bench/`` and the message-budget test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

from gpurelay_client import AsyncClient
from nats.aio.msg import Msg
from rich.progress import Progress

from bench.harness.message_counter import MessageCounter, Tally
from contracts.streams import JOBS, KV_DISPATCH_RUNTIMES
from services.cli.client import async_client, cli_settings
from services.cli.demo.media import write_lap_video
from services.cli.dev import DevStack
from services.cli.submit import submit_and_watch, upload
from services.common.config import BaseServiceSettings
from services.common.nats.identity import identity_options
from services.notifier.webhooks.fanout import FANOUT_DURABLE

SETTLE_S = 60.0
ROUTES = """
profiles:
  dev:
    lap_compare:
      backend: local
      local: modal_workers.lap_compare:run
      function: lap_compare
      gpus: []
      timeout_s: 300
      retries: {max_attempts: 1}
      concurrency: 2
    pose:
      backend: local
      local: bench.noop_workload:noop
      function: pose
      gpus: []
      timeout_s: 60
      retries: {max_attempts: 1}
      concurrency: 2
  prod: {}
"""
TERMINAL = ("succeeded", "failed", "canceled")
FANOUT_ACK = f"$JS.ACK.{JOBS}.{FANOUT_DURABLE}."
"""The webhook fan-out's ack subjects (``{delivered}.{stream seq}.{delivery seq}.…`` follow)."""


@dataclass
class Stack:
    """A started embedded stack, its counter and the inputs of a lap_compare job."""

    dev: DevStack
    counter: MessageCounter
    client: AsyncClient
    videos: dict[str, Path]
    fanout: FanoutAcks


def lap_videos(folder: Path) -> dict[str, Path]:
    """Two short synthetic laps (the demo's), as ``video`` and ``reference``."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "video": write_lap_video(folder / "lap.mp4", 1.0, wobble=0.02),
        "reference": write_lap_video(folder / "reference.mp4", 1.1),
    }


@asynccontextmanager
async def embedded_stack(folder: Path) -> AsyncIterator[Stack]:
    """``gpurelay dev``'s stack in this process on ``folder``, counted from its start."""
    routes = folder / "routes.yaml"
    routes.write_text(ROUTES)
    dev = DevStack(folder / "data", port=0)
    before = os.environ.get("GPURELAY_ROUTE_TABLE")
    os.environ["GPURELAY_ROUTE_TABLE"] = str(routes)  # what the dispatcher's settings read
    try:
        env = await dev.start()
    finally:
        os.environ.pop("GPURELAY_ROUTE_TABLE")
        if before is not None:
            os.environ["GPURELAY_ROUTE_TABLE"] = before
    counter = MessageCounter()
    try:
        operator = BaseServiceSettings(
            nats_url=env["GPURELAY_NATS_URL"],
            nats_user=env.get("GPURELAY_NATS_USER"),
            nats_password=env.get("GPURELAY_NATS_PASSWORD"),
        )  # gpurelay dev's operator (dev.env), who may watch every subject
        await counter.start(env["GPURELAY_NATS_URL"], **identity_options(operator))
        fanout = FanoutAcks()
        counter.observers.append(fanout.saw)
        async with async_client(cli_settings(folder / "data")) as client:
            yield Stack(dev, counter, client, lap_videos(folder / "videos"), fanout)
    finally:
        await counter.stop()
        await dev.stop()


class FanoutAcks:
    """How far the webhook fan-out has acked the JOBS events it was delivered, as the counter sees them
    (its ack is held up to a second: ``services/notifier/webhooks/fanout_acks.py``)."""

    def __init__(self) -> None:
        self.delivered = self.acked = 0  # JOBS stream sequences
        self._changed = asyncio.Event()

    def saw(self, msg: Msg) -> None:
        """A delivery to the fan-out (its reply the ack subject) or its ack: ``…{delivered}.{stream seq}.…``."""
        if msg.reply.startswith(FANOUT_ACK):
            self.delivered = max(self.delivered, int(msg.reply[len(FANOUT_ACK) :].split(".")[1]))
        elif msg.subject.startswith(FANOUT_ACK):
            self.acked = max(self.acked, int(msg.subject[len(FANOUT_ACK) :].split(".")[1]))
            self._changed.set()

    async def caught_up(self) -> None:
        """Wait until the fan-out acked every event it was delivered."""
        async with asyncio.timeout(SETTLE_S):
            while self.acked < self.delivered:
                self._changed.clear()
                await self._changed.wait()


class _Ends:
    """Notes, from the counter's connection, each job whose record turned terminal and whose queue entry
    was deleted (the job's last writes), and each kind whose run times the dispatcher wrote (its tally of
    a success, up to a second after it): a window that waits for these and for the fan-out's ack holds
    all of a job's messages."""

    def __init__(self, stack: Stack) -> None:
        assert stack.counter._nc is not None
        self._nc, self._fanout = stack.counter._nc, stack.fanout
        self.records: set[str] = set()
        self.entries: set[str] = set()
        self.tallied: set[str] = set()
        self._changed = asyncio.Event()

    async def __aenter__(self) -> _Ends:
        self._sub = await self._nc.subscribe("$KV.>", cb=self._on_write)
        await self._nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._sub.unsubscribe()

    async def _on_write(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) == 4:  # $KV.{jobs}.{tenant}.{job}: a record
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(msg.data or b"{}").get("status") in TERMINAL:
                    self.records.add(parts[3])
        elif len(parts) == 6 and (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
            self.entries.add(parts[4])  # $KV.{dispatch_queue}.{kind}.{tenant}.{job}.{attempt}
        if parts[1] == KV_DISPATCH_RUNTIMES:
            self.tallied.add(parts[2])  # $KV.{dispatch_runtimes}.{kind}
        self._changed.set()

    async def settled(self, job_id: str, kind: str) -> None:
        """Wait until ``job_id`` (a success of ``kind``) has its terminal record, its queue entry deleted
        and its run time tallied (the only job running), and the fan-out acked its events."""
        async with asyncio.timeout(SETTLE_S):
            while not (job_id in self.records and job_id in self.entries and kind in self.tallied):
                self._changed.clear()
                await self._changed.wait()
        await self._fanout.caught_up()


async def _uploaded(stack: Stack, files: dict[str, Path]) -> dict[str, dict[str, str]]:
    refs: dict[str, dict[str, str]] = {}
    with Progress(disable=True) as progress:
        for name, path in files.items():
            refs[name] = {"upload_id": await upload(stack.client, path, progress)}
    return refs


async def job_only(stack: Stack) -> Tally:
    """One no-op ``pose`` job with its input uploaded first: ``POST /v1/jobs`` → settled, no follower."""
    refs = await _uploaded(stack, {"video": stack.videos["video"]})
    await asyncio.sleep(0.5)  # the upload's own tail (its fold) out of the window
    await stack.fanout.caught_up()  # and its fan-out ack
    async with stack.counter.window() as tally, _Ends(stack) as ends:
        # the bare POST, no Idempotency-Key (jobs.create sends one: a KV claim more in the window)
        job = await stack.client.request("POST", "/v1/jobs", json={"kind": "pose", "inputs": refs})
        await ends.settled(job["id"], "pose")
    return tally


async def submitted(stack: Stack) -> Tally:
    """One lap_compare job as ``gpurelay submit`` runs it: two uploads, the job, one SSE follower."""
    async with stack.counter.window() as tally, _Ends(stack) as ends:
        with redirect_stderr(StringIO()), redirect_stdout(StringIO()):  # the CLI's progress and record
            record = await submit_and_watch(stack.client, "lap_compare", stack.videos, {}, True)
        assert record is not None
        assert record.get("status") == "succeeded", record
        await ends.settled(str(record["id"]), "lap_compare")
    return tally


async def at_rest(stack: Stack, seconds: float) -> Tally:
    """What the idle stack exchanges over ``seconds``."""
    async with stack.counter.window() as tally:
        await asyncio.sleep(seconds)
    return tally
