"""``gpurelay dev`` in a child process, for the tests that start, pause, kill and stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from services.common.config import dev_env_path

READY_LINE = "gpurelay dev ready"


def dev_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
    env["COLUMNS"] = "250"
    return env


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


START_LINE_S = 90.0
"""How long ``gpurelay dev`` may go without a line while it starts (seconds alone; at load 16, past 30)."""


@asynccontextmanager
async def running_dev(data_dir: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str]]]:
    """``gpurelay dev`` in a child process; yields once it printed that it is ready."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        "dev",
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dev_env(),
    )
    assert proc.stdout is not None
    seen: list[str] = []
    reader: asyncio.Task[None] | None = None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), START_LINE_S)).decode()
            assert line, f"gpurelay dev exited before it was ready: {''.join(seen)}"
            seen.append(line)
            if READY_LINE in line:
                break
        # Keep reading what it logs: a full pipe would stall it, and a StreamReader past its
        # high-water mark stops reading, so wait() would never see the pipe close.
        reader = asyncio.create_task(drain(proc.stdout, dev_log_path(data_dir)))
        yield proc, read_env_file(dev_env_path(data_dir))
    finally:
        if proc.returncode is None:
            children = list(children_of(proc.pid))
            proc.kill()
            kill_leftovers(children)  # whatever a failed test left running (they hold its stdout)
            await proc.wait()
        if reader is not None:
            reader.cancel()


def dev_log_path(data_dir: Path) -> Path:
    """Where :func:`running_dev` keeps what ``gpurelay dev`` logged once it was ready (beside its data)."""
    return data_dir.parent / "gpurelay-dev.log"


def dev_log_tail(data_dir: Path, lines: int = 60) -> str:
    """The last ``lines`` lines ``gpurelay dev`` logged: what a failed test shows."""
    try:
        return "".join(dev_log_path(data_dir).read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


@asynccontextmanager
async def showing_dev_log(data_dir: Path) -> AsyncIterator[None]:
    """A failed assertion inside says, with its own message, what ``gpurelay dev`` logged last."""
    try:
        yield
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n--- gpurelay dev's last lines ---\n{dev_log_tail(data_dir)}") from failed


async def drain(stream: asyncio.StreamReader, log: Path) -> None:
    """Read ``stream`` to its end into ``log`` (a test's tmp dir: it lasts as long as the test)."""
    with log.open("ab") as out:
        while chunk := await stream.read(1 << 16):
            out.write(chunk)
            out.flush()


def children_of(pid: int) -> dict[int, str]:
    """The live children of ``pid``: their ids and command lines."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
    return found


def process_state(pid: int) -> str | None:
    """``pid``'s state letter in ``/proc`` (``R``, ``S``, ``T`` stopped, ``Z`` zombie…); ``None``: no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def running(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie has)."""
    return process_state(pid) not in (None, "Z")


async def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Poll until every pid in ``pids`` has exited; those still running at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (left := [pid for pid in pids if running(pid)]) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 - another process's exit: nothing to await
        await asyncio.sleep(0.05)
    return left


def kill_leftovers(pids: list[int]) -> None:
    """SIGKILL the processes this test recorded that still run (so a failure leaks nothing)."""
    for pid in pids:
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
