"""The services as their own processes (``gpurelay gateway|dispatcher|notifier``), for the fault suite.

Each :class:`ServiceProcess` records the pid of the child it starts and only ever signals that pid:
SIGKILL for a crash (:meth:`~ServiceProcess.kill`), SIGTERM then SIGKILL to stop. A child dies with
the thread that started it (``PR_SET_PDEATHSIG``), and the dispatcher's pool workers die with the
dispatcher (``GPURELAY_LOCAL_WORKERS_DIE_WITH_DISPATCHER``), so nothing outlives a test.
:func:`service_env` is the environment every service of one stack shares: fast heartbeats, ack
waits, retries and sweeps, so a crash is noticed in seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx

from bench.harness.secrets import INGEST_SECRET, SIGNING_SECRET
from services.common.nats.server.ports import free_port
from services.common.processes import preexec_die_with_parent

ROOT = Path(__file__).resolve().parents[2]
READY_PATHS = {"gateway": "/readyz", "notifier": "/readyz", "dispatcher": "/healthz"}
READY_S = 120.0
"""How long a started service may take to answer ready: a gateway on a 3-node cluster at load 18 took past 60 s
(its imports and R3 declarations), alone a few seconds; the wait ends as soon as it answers."""
PORT_MOVES = 3
"""How many times a child whose port another process took first (between the pick and its bind) is started
again on a new one."""
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Timeout)\w*: ")
"""A traceback's last line, naming the exception (``nats.errors.TimeoutError: nats: timeout``)."""
RETRY_SCHEDULE_S = [0.0, 0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
"""Webhook retries of the fault stack: ~33 s of attempts, more than any outage it is put through."""


def gpurelay_script() -> str:
    """The ``gpurelay`` console script beside this interpreter."""
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        if found := shutil.which("gpurelay", path=directory):
            return found
    raise RuntimeError("the gpurelay console script is not installed beside this interpreter")


def service_env(nats_url: str, data_dir: Path, route_table: Path, **settings: object) -> dict[str, str]:
    """``GPURELAY_*`` for every service of one stack (per-service ports are added by :class:`ServiceProcess`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    values: dict[str, object] = {
        "profile": "test",
        "nats_url": nats_url,
        "data_dir": str(data_dir),
        "storage_backend": "local",
        "signing_secret": SIGNING_SECRET,
        "ingest_token_secret": INGEST_SECRET,
        "log_level": "WARNING",
        "log_format": "console",
        "route_table": str(route_table),
        "allow_url_inputs": "true",
        "local_workers_die_with_dispatcher": "true",
        "heartbeat_interval_s": 0.3,
        "heartbeat_misses": 15,  # 4.5 s: a server catching up after a 15 s pause passed them 2.2 s apart
        "event_ack_wait_s": 2.0,
        "ticket_ack_wait_s": 2.0,
        "created_republish_after_s": 2.0,
        "created_sweep_interval_s": 1.0,
        "webhook_allow_hosts": json.dumps(["127.0.0.1"]),
        "webhook_retry_schedule_s": json.dumps(RETRY_SCHEDULE_S),
        "webhook_retry_jitter": 0.0,
        "webhook_timeout_s": 1.0,
        "webhook_ack_wait_s": 2.0,
        "webhook_lease_ttl_s": 1.5,
        "sse_retry_ms": 200,
        "sse_pull_heartbeat_s": 0.5,
        "sse_progress_max_per_s": 0,
        "sse_max_streams_per_tenant": 1000,
    }
    values.update(settings)
    env.update({f"GPURELAY_{name.upper()}": str(value) for name, value in values.items()})
    return env


class ServiceProcess:
    """One ``gpurelay {service}`` child on its own loopback port; its output appended to ``log``."""

    def __init__(self, service: str, env: dict[str, str], log: Path) -> None:
        self.service, self.log = service, log
        self.env = dict(env)
        self._take_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_from = 0

    def _take_port(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env |= {"GPURELAY_HOST": "127.0.0.1", "GPURELAY_PORT": str(self.port), "GPURELAY_URL": self.url}

    @property
    def pid(self) -> int | None:
        """The running child's pid."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def launch(self) -> None:
        """Start the child (same port as before); do not wait for it."""
        assert self.pid is None, f"{self.service} runs already"
        self._log_from = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [gpurelay_script(), self.service], cwd=ROOT, env=self.env, stdout=out, stderr=out,
                stdin=subprocess.DEVNULL, preexec_fn=preexec_die_with_parent(signal.SIGKILL),
            )  # fmt: skip
        self.starts += 1

    async def start(self, timeout_s: float = READY_S) -> None:
        """Start the child and wait until its readiness route answers 200."""
        self.launch()
        await self.ready(timeout_s)

    async def ready(self, timeout_s: float = READY_S) -> None:
        """Wait until the child answers 200 on its readiness route (it must not exit meanwhile, unless another
        process took its port first: then it is started again on a new one, up to :data:`PORT_MOVES` times)."""
        deadline, moves = time.monotonic() + timeout_s, 0
        while True:
            async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as http:
                while self.process is not None and self.process.poll() is None:
                    try:
                        if (await http.get(READY_PATHS[self.service])).status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.service} not ready in {timeout_s}s; see {self.log}")
                    await asyncio.sleep(0.05)
            if self.process is None or moves == PORT_MOVES or not self._port_was_taken():
                raise RuntimeError(f"{self.service} exited during start-up ({self._last_words()}); see {self.log}")
            moves += 1
            self._take_port()
            self.launch()

    def _last_words(self) -> str:
        """The last exception line the last start wrote (``SomeError: why``; else its last line): a CI summary
        shows only an error's first line, and the log is gone with the run."""
        try:
            with self.log.open("rb") as log:
                log.seek(self._log_from)
                lines = log.read().decode(errors="replace").strip().splitlines()
        except OSError as exc:
            return f"no log: {exc}"
        raised = [line for line in lines if EXCEPTION_LINE.match(line)]
        return (raised or lines or ["it wrote nothing"])[-1][:300]

    def _port_was_taken(self) -> bool:
        """Whether the last start's output says its port was in use (uvicorn's words and Python's)."""
        try:
            with self.log.open("rb") as log:
                log.seek(self._log_from)
                return b"address already in use" in log.read().lower()
        except OSError:
            return False

    def log_excerpt(self, last: int = 40) -> str:
        """The last ``last`` warnings and errors of the child's log (a failed check shows what it said)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"{self.service}: no log ({exc})"
        levels = [(f'"{level}"', f" {level} ") for level in ("WARNING", "ERROR", "CRITICAL")]  # JSON, console
        said = [line for line in lines if any(json in line or console in line for json, console in levels)]
        return f"{self.service}, last of {len(said)} warnings and errors:\n" + "\n".join(said[-last:])

    async def answers_ready(self) -> bool:
        """Whether the child answers 200 on its readiness route right now (503: NATS is not connected)."""
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as http:
                return (await http.get(READY_PATHS[self.service])).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL the child (a crash) and reap it."""
        assert self.process is not None, f"{self.service} was never started"
        assert self.process.poll() is None, f"{self.service} is not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    async def restart(self, timeout_s: float = 60.0) -> None:
        """SIGKILL the child, start a new one on the same port and wait until it is ready."""
        self.kill()
        await self.start(timeout_s)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the child (a clean stop), SIGKILL it if it lingers; reap it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
