"""A process inside one host's namespace, with a recorded pid that dies with the test.

``ip netns exec NS CMD`` enters the namespace and execs ``CMD``, so the pid :class:`NsProcess`
records is the command's own; ``PR_SET_PDEATHSIG`` (set before the exec, kept across it) kills it
when the thread that started it dies, however the test ends. Start processes from the event loop's
thread. Only that pid is ever signalled (pause, resume, kill, stop); what it spawned lives in the
same namespace and goes with the namespace's teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from services.common.processes import preexec_die_with_parent
from tests.support.netns.network import TestNet
from tests.support.stopping import sigstop

STOP_S = 15.0


class Pausable:
    """SIGSTOP and SIGCONT of the process a subclass runs (its ``pid``: ``None`` while none runs)."""

    pid: int | None  # declared only: each subclass (or the class beside it) has its own

    def pause(self) -> None:
        """SIGSTOP it (a frozen host: it neither reads nor writes)."""
        assert self.pid is not None, "not running"
        sigstop(self.pid)

    def resume(self) -> None:
        """SIGCONT it (nothing if it is not running)."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)


class NsProcess(Pausable):
    """``argv`` in host ``host`` of ``net``, its output appended to ``log``."""

    def __init__(self, net: TestNet, host: str, argv: list[str], env: dict[str, str], log: Path,
                 cwd: Path | None = None) -> None:  # fmt: skip
        self.net, self.host, self.argv, self.env, self.log, self.cwd = net, host, argv, env, log, cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The running process's pid."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def launch(self) -> None:
        """Start it; do not wait."""
        assert self.pid is None, f"{self.argv[0]} in {self.host} runs already"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.net.exec_argv(self.host, self.argv), cwd=self.cwd, env=self.env, stdout=out, stderr=out,
                stdin=subprocess.DEVNULL, preexec_fn=preexec_die_with_parent(signal.SIGKILL),
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL it (a crash) and reap it."""
        assert self.process is not None, f"{self.argv[0]} was never started"
        assert self.process.poll() is None, f"{self.argv[0]} is not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_S)

    def stop(self) -> None:
        """SIGTERM it (continued first if paused), SIGKILL if it lingers; reap it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_S)
