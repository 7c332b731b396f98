"""Dispatcher *processes* for tests: ``python -m services.dispatcher`` with a pose route on a test
workload, so a test can SIGKILL a replica or stop it with SIGTERM as a deployment would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from services.dispatcher.settings import DispatcherSettings
from tests.support.dispatcher import W

ROOT = Path(__file__).resolve().parents[2]
ROUTES = """
profiles:
  dev:
    pose: {{backend: local, function: pose, local: "{w}:{fn}", timeout_s: 30, concurrency: 64,
           price_per_gpu_hour: 1.0, retries: {{max_attempts: 3, backoff_initial_s: 0.05}}}}
"""


class Replica:
    """``python -m services.dispatcher`` in its own process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.dispatcher"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )

    async def ready(self, within_s: float = 60.0) -> None:
        assert self.process.stdout is not None
        async with asyncio.timeout(within_s):
            line = await asyncio.to_thread(self.process.stdout.readline)
        assert line.strip() == b"dispatcher ready", line

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


StartReplica = Callable[..., Replica]


def replica_starter(settings: DispatcherSettings, tmp_path: Path, started: list[Replica]) -> StartReplica:
    """``start(fn, **env)``: a replica whose pose route runs ``workloads:<fn>`` (each run leaves a mark
    file under ``tmp_path/marks``), fast heartbeats and ack waits unless ``env`` (``GPURELAY_*``) says."""
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)

    def start(fn: str, **overrides: str) -> Replica:
        table = tmp_path / f"routes-{fn}.yaml"
        table.write_text(ROUTES.format(w=W, fn=fn))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
        env.update(
            GPURELAY_PROFILE="test",
            GPURELAY_NATS_URL=settings.nats_url,
            GPURELAY_NAMESPACE=settings.namespace,
            GPURELAY_DATA_DIR=str(settings.data_dir),
            GPURELAY_ROUTE_TABLE=str(table),
            GPURELAY_HEARTBEAT_INTERVAL_S="0.3",
            GPURELAY_HEARTBEAT_MISSES="5",
            GPURELAY_EVENT_ACK_WAIT_S="1.5",
            GPURELAY_TICKET_ACK_WAIT_S="1.5",
            GPURELAY_LOCAL_POOL_SIZE="2",
            GPURELAY_PORT="0",  # the health endpoint: any free port (two replicas run at once)
            GPURELAY_LOG_LEVEL="WARNING",
            GPURELAY_TEST_MARKS=str(marks),
            PYTHONPATH=str(ROOT),
        )
        env.update(overrides)
        replica = Replica(env, tmp_path / "dispatcher.log")
        started.append(replica)
        return replica

    return start
