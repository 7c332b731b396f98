"""gpurelay's services as separate hosts: a gateway, 2 dispatchers (their local pools are the worker
pool) and 2 notifiers, each in its own namespace, told every NATS node's URL, streams at 3 replicas.

:class:`NsService` is a :class:`~bench.harness.service_processes.ServiceProcess` started through
``ip netns exec`` and serving on its host's address. :class:`NsStack` is the five of them: ``pose``
jobs run :func:`bench.harness.fault_workloads.short` (:data:`STEPS` logged steps), ``vlm`` sessions
the echo workload (``FaultStack``'s route table); one dispatcher's host may get a
:class:`~tests.support.netns.clock.SteppedClock`. Given the cluster's users (passwords by role), each
service connects as its role and its pool's workers as the worker, as compose runs them.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from nats.aio.client import Client as NatsClient

from bench.harness.fault_stack import PRICE_PER_GPU_HOUR, ROUTES
from bench.harness.service_processes import ROOT, ServiceProcess, gpurelay_script, service_env
from contracts.streams import KV_APIKEYS
from contracts.subjects import Namespace
from services.common.auth.apikeys import ApiKeyStore
from services.common.config import BaseServiceSettings
from services.common.nats.declarations import declare_all
from services.common.nats.identity import identity_env
from services.common.nats.permissions import Role
from services.common.processes import preexec_die_with_parent
from services.dispatcher.fold.records import Pricing, route_pricing
from tests.support.netns.clock import SteppedClock, faketime_library
from tests.support.netns.network import TestNet
from tests.support.netns.process import Pausable

SERVICE_PORT = 8000
STEPS = 3
HOSTS: dict[str, Role] = {"gw": "gateway", "d1": "dispatcher", "d2": "dispatcher", "t1": "notifier", "t2": "notifier"}
"""The service hosts and what runs on each."""
READY_S = 120.0
START_ATTEMPTS = 3
"""Starts of a service that exits during start-up (compose restarts it: ``restart: unless-stopped``). A
cluster just formed can leave a JetStream request of a start-up unanswered past its 5 s (the notifier's
read of its deliveries bucket did, once on CI), and the service exits."""


class NsService(Pausable, ServiceProcess):
    """``gpurelay {service}`` in host ``host`` of ``net`` at ``http://{address}:8000`` (a pause stops the
    service alone: its pool workers, separate processes, go on)."""

    def __init__(self, net: TestNet, host: str, service: str, env: dict[str, str], log: Path) -> None:
        super().__init__(service, env, log)
        self.net, self.host = net, host
        self.port = SERVICE_PORT
        self.url = f"http://{net[host].address}:{SERVICE_PORT}"
        self.env = {**env, "GPURELAY_HOST": net[host].address, "GPURELAY_PORT": str(SERVICE_PORT),
                    "GPURELAY_URL": self.url}  # fmt: skip

    def launch(self) -> None:
        """Start the service in its namespace; do not wait for it."""
        assert self.pid is None, f"{self.service} on {self.host} runs already"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.net.exec_argv(self.host, [gpurelay_script(), self.service]), cwd=ROOT, env=self.env,
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, preexec_fn=preexec_die_with_parent(signal.SIGKILL),
            )  # fmt: skip
        self.starts += 1


class NsStack:
    """The five service hosts of ``net`` on the cluster at ``nats_url``; ``clock_host``'s clock may step;
    each service as its role's user of ``users``, when given."""

    def __init__(self, net: TestNet, root: Path, nats_url: str, concurrency: int = 3, sessions: int = 2,
                 clock_host: str | None = "d2", users: Mapping[Role, str] | None = None) -> None:  # fmt: skip
        self.net, self.nats_url = net, nats_url
        self.marks, logs = root / "marks", root / "logs"
        for directory in (self.marks, logs, root / "data"):
            directory.mkdir(parents=True, exist_ok=True)
        routes = root / "routes.yaml"
        routes.write_text(ROUTES.format(workload="short", concurrency=concurrency, sessions=sessions,
                                        price=PRICE_PER_GPU_HOUR))  # fmt: skip
        env = service_env(
            nats_url, root / "data", routes, nats_replicas=3, test_marks=str(self.marks),
            local_pool_size=concurrency + sessions, webhook_allow_hosts=f'["{net.client_address}"]',
        )  # fmt: skip
        env["GPURELAY_TEST_STEPS"] = str(STEPS)
        self.clock = SteppedClock(root / "clock") if clock_host and faketime_library() else None
        self.services: dict[str, NsService] = {}
        for host, service in HOSTS.items():
            own = env | (identity_env(service, Namespace(), users) if users else {})
            host_env = self.clock.env(own) if self.clock and host == clock_host else own
            self.services[host] = NsService(net, host, service, host_env, logs / f"{host}-{service}.log")

    def __getitem__(self, host: str) -> NsService:
        return self.services[host]

    @property
    def gateway(self) -> NsService:
        """The gateway."""
        return self.services["gw"]

    @property
    def notifiers(self) -> list[NsService]:
        """Both notifiers."""
        return [s for s in self.services.values() if s.service == "notifier"]

    @property
    def settings(self) -> BaseServiceSettings:
        """What every service shares (namespace, replicas), for the test's own reads."""
        return BaseServiceSettings(profile="test", nats_url=self.nats_url, nats_replicas=3)

    @property
    def pricing(self) -> Pricing:
        """What the dispatchers price GPU time with (the fold needs it)."""
        return route_pricing({"pose": PRICE_PER_GPU_HOUR})

    async def start(self, nc: NatsClient) -> None:
        """Declare the streams and buckets (3 replicas), start every service, wait until each is ready."""
        await declare_all(nc.jetstream(timeout=20.0), self.settings)
        for service in self.services.values():
            service.launch()
        await asyncio.gather(*(_started(service) for service in self.services.values()))

    def stop(self) -> None:
        """Stop every service (continued first, if paused)."""
        for service in self.services.values():
            service.resume()
            service.stop()

    async def tenant(self, nc: NatsClient, name: str = "acme") -> str:
        """A new API key of tenant ``name``."""
        store = ApiKeyStore(await nc.jetstream(timeout=20.0).key_value(self.settings.ns.bucket(KV_APIKEYS)))
        _, key = await store.create(name)
        return key

    async def all_ready(self) -> dict[str, bool]:
        """Whether each service answers its readiness route now."""
        answers = await asyncio.gather(*(s.answers_ready() for s in self.services.values()))
        return dict(zip(self.services, answers, strict=True))


async def _started(service: NsService) -> None:
    """Wait until ``service`` is ready, launching it again (up to :data:`START_ATTEMPTS` starts in all)
    when it exited during start-up, as compose does; its log keeps every start's output."""
    while True:
        try:
            return await service.ready(READY_S)
        except RuntimeError:
            if service.pid is not None or service.starts >= START_ATTEMPTS:
                raise
            print(f"{service.service} on {service.host} exited during start-up; starting it again")
            service.launch()
