"""The processes of ``bench/sessions.py``: its worker (``python -m bench.session_worker``) and the gateway.

Session mode (``--session ID``) runs exactly the input path of a local-pool session worker: a
:class:`~services.common.session_feed.NatsSessionFeed` (frames and control from FRAMES, the robot's
joints from TELEMETRY) putting items into a :class:`~modal_workers.runtime.session_input.SessionInput`, which
a thread polls as a workload does. Raw mode (``--raw SUBJECT``) is the baseline: a plain JetStream
ordered consumer on one FRAMES subject, nothing else.

Protocol on stdout, one line each: ``ready`` once subscribed; ``frame SEQ T JOINTS`` for every frame
handed out (``T`` = ``time.monotonic()`` at the handout, CLOCK_MONOTONIC on Linux, which every process
on the machine shares; ``JOINTS`` = 1 when a joint sample was matched); ``joints N`` for every joint
sample received (``N``: how many so far); after stdin closes, ``stats {json}`` (the input's counts)
and the process exits. :class:`WorkerProcess` is the bench's handle on such a process; :func:`gateway`
runs the gateway as deployed (``python -m services.cli.main gateway``) in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.session_feed import H_SEQ, FeedJoints
from contracts.streams import FRAMES
from contracts.subjects import Namespace
from modal_workers.runtime.session_input import SessionInput
from services.common.nats.server.ports import free_port
from services.common.session_feed import FeedItem, NatsSessionFeed

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.5
START_TIMEOUT_S = 30.0
_out = threading.Lock()


def say(line: str) -> None:
    """One protocol line on stdout, whole and flushed (the poll thread and the loop both write)."""
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def poll_frames(into: SessionInput) -> None:
    """The workload's loop: poll until the session stops, reporting each frame's handout time."""
    while True:
        batch = into.poll(POLL_S)
        now = time.monotonic()
        for frame in batch.frames:
            say(f"frame {frame.seq} {now:.6f} {int(frame.joints is not None)}")
        if batch.stop is not None:
            return


async def stdin_closed() -> None:
    """Wait until the bench closes our stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(1024):
        pass


async def session_mode(js: Any, args: argparse.Namespace) -> None:
    """Feed → SessionInput → a polling thread, until stdin closes; then the input's counts."""
    into = SessionInput(expects_joints=args.joints, joint_tolerance_s=args.joint_tolerance_s)

    def put(item: FeedItem, data: bytes | None) -> None:
        into.put(item, data)
        if isinstance(item, FeedJoints):
            say(f"joints {into.joints_received}")

    feed = NatsSessionFeed(js, Namespace(args.namespace), args.tenant, args.session, args.robot, put)
    await feed.start()
    poller = threading.Thread(target=poll_frames, args=(into,), name="workload", daemon=True)
    poller.start()
    say("ready")
    await stdin_closed()
    into.close()
    await asyncio.to_thread(poller.join, 5)
    await feed.stop()
    say("stats " + json.dumps(into.stats()))


async def raw_mode(js: Any, args: argparse.Namespace) -> None:
    """The baseline: a plain ordered consumer on one subject, each message reported on receipt."""

    async def on_msg(msg: Msg) -> None:
        seq = (msg.headers or {}).get(H_SEQ, "0")
        say(f"frame {seq} {time.monotonic():.6f} 0")

    stream = Namespace(args.namespace).stream(FRAMES)
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    sub = await js.subscribe(args.raw, stream=stream, cb=on_msg, ordered_consumer=True, config=config)
    say("ready")
    await stdin_closed()
    await sub.unsubscribe()
    say("stats {}")


def rss_mb(pid: int) -> float:
    """The resident set size of process ``pid`` in MB (``VmRSS`` in ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for process {pid}")


class WorkerProcess:
    """The bench's handle on one worker process: what it handed out, its RSS, its final counts."""

    def __init__(self, nats_url: str, namespace: str, *args: str) -> None:
        self.command = [sys.executable, "-m", "bench.session_worker", "--nats", nats_url, "--namespace", namespace]
        self.command += args
        self.frames: dict[int, tuple[float, bool]] = {}  # seq -> (handout time, joint sample matched)
        self.joints = 0
        self.stats: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The worker's process id."""
        assert self._process is not None
        return self._process.pid

    async def __aenter__(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
        env["PYTHONPATH"] = str(ROOT)
        self._process = await asyncio.create_subprocess_exec(
            *self.command, cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), START_TIMEOUT_S)
        if line.strip() != b"ready":
            raise RuntimeError(f"the worker did not start: {line!r}")
        self._reader = asyncio.create_task(self._read(self._process.stdout))
        return self

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            kind, _, rest = line.decode().strip().partition(" ")
            if kind == "frame":
                seq, at, matched = rest.split()
                self.frames[int(seq)] = (float(at), matched == "1")
            elif kind == "joints":
                self.joints = int(rest)
            elif kind == "stats":
                self.stats = json.loads(rest)
            self._changed.set()

    async def until(self, done: Callable[[], bool], within_s: float = START_TIMEOUT_S) -> None:
        """Wait until ``done()`` holds (checked on every line the worker writes); TimeoutError after ``within_s``."""
        async with asyncio.timeout(within_s):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def wait_frames(self, seqs: Iterable[int], within_s: float = START_TIMEOUT_S) -> None:
        """Wait until the worker handed out every frame of ``seqs``."""
        wanted = set(seqs)
        await self.until(lambda: wanted <= self.frames.keys(), within_s)

    async def close(self) -> dict[str, int]:
        """Close the worker's stdin; its final counts once it exited."""
        assert self._process is not None
        assert self._process.stdin is not None
        assert self._reader is not None
        self._process.stdin.close()
        await asyncio.wait_for(self._reader, START_TIMEOUT_S)
        await asyncio.wait_for(self._process.wait(), START_TIMEOUT_S)
        return self.stats

    async def __aexit__(self, *exc: object) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        if self._reader is not None:
            self._reader.cancel()


@contextlib.asynccontextmanager
async def gateway(nats_url: str, namespace: str, data_dir: Path) -> AsyncIterator[tuple[int, int]]:
    """The gateway in its own process, ready; yields (port, pid) and ends the process after."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
    env.update(
        PYTHONPATH=str(ROOT), GPURELAY_PROFILE="test", GPURELAY_NATS_URL=nats_url, GPURELAY_NAMESPACE=namespace,
        GPURELAY_DATA_DIR=str(data_dir), GPURELAY_HOST="127.0.0.1", GPURELAY_PORT=str(port),
        GPURELAY_LOG_LEVEL="WARNING",
    )  # fmt: skip
    command = [sys.executable, "-m", "services.cli.main", "gateway"]
    process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            deadline = time.monotonic() + START_TIMEOUT_S
            while process.returncode is None and time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"the gateway did not become ready (exit code {process.returncode})")
        yield port, process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def main(args: argparse.Namespace) -> None:
    nc = await nats.connect(args.nats, connect_timeout=5)
    try:
        js = nc.jetstream()
        await (raw_mode(js, args) if args.raw else session_mode(js, args))
    finally:
        await nc.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--tenant", default="bench")
    parser.add_argument("--session", help="a session id: read its feed into a SessionInput")
    parser.add_argument("--robot", help="the session's robot (its joints are read too)")
    parser.add_argument("--joints", action="store_true", help="the input expects joints (splat)")
    parser.add_argument("--joint-tolerance-s", type=float, default=0.05)
    parser.add_argument("--raw", help="baseline: a FRAMES subject to read with a plain ordered consumer")
    args = parser.parse_args(argv)
    if not (args.session or args.raw):
        parser.error("give --session or --raw")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
