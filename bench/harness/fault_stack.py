"""A whole deployment in child processes for the fault suite: gateway, dispatcher and notifier on NATS.

:class:`FaultStack` runs ``gpurelay gateway``, ``gpurelay dispatcher`` and ``gpurelay notifier``
(:class:`~bench.harness.service_processes.ServiceProcess`) against a given NATS URL (one server or a
cluster's servers), with the ``pose`` kind routed to a workload of
:mod:`bench.harness.fault_workloads` in the local pool; clients act on it as real ones do,
driven by :mod:`bench.harness.fault_clients`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from bench.harness.service_processes import ServiceProcess, service_env
from contracts.streams import KV_APIKEYS
from contracts.subjects import Namespace
from services.common.auth.apikeys import ApiKeyStore
from services.common.config import BaseServiceSettings
from services.common.nats.declarations import declare_all
from services.common.nats.identity import identity_env, identity_options, identity_settings
from services.common.nats.permissions import Role
from services.dispatcher.fold.records import Pricing, route_pricing

PRICE_PER_GPU_HOUR = 3.6
ROUTES = """
profiles:
  dev:
    pose:
      backend: local
      local: bench.harness.fault_workloads:{workload}
      function: pose
      timeout_s: 120
      retries: {{max_attempts: 6, backoff_initial_s: 0.1, backoff_max_s: 0.5}}
      concurrency: {concurrency}
      price_per_gpu_hour: {price}
    vlm:
      backend: local
      local: bench.harness.session_echo:run
      function: vlm
      timeout_s: 300
      retries: {{max_attempts: 3, backoff_initial_s: 0.1, backoff_max_s: 0.5}}
      concurrency: {sessions}
  prod: {{}}
"""


def operator_options(users: Mapping[Role, str] | None) -> dict[str, Any]:
    """nats-py's options to connect as the operator of a server with ``users`` (passwords by role);
    none where it has no users."""
    if not users:
        return {}
    return identity_options(BaseServiceSettings.model_validate(identity_settings("operator", Namespace(), users)))


async def connect_test_client(nats_url: str, users: Mapping[Role, str] | None = None) -> NatsClient:
    """The test's own NATS connection: every server of ``nats_url``, reconnecting forever; as the
    operator where the server has ``users``."""
    return await nats.connect(
        [u for u in nats_url.split(",") if u], connect_timeout=2, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
        **operator_options(users),
    )  # fmt: skip


class FaultStack:
    """The three services as processes under ``root``; ``pose`` runs ``fault_workloads:{workload}``,
    ``vlm`` sessions the echo workload (:mod:`bench.harness.session_echo`, resumable: a lost worker's
    session resumes, up to 3 attempts) in ``sessions`` more pool processes (none: they share the jobs'
    processes). On a server with ``users`` (passwords by role:
    :mod:`services.common.nats.server.auth`), each service connects as its role, as compose runs them;
    the test's client then connects as the operator (:func:`connect_test_client` with the same users)."""

    def __init__(
        self, root: Path, nats_url: str, workload: str = "short", concurrency: int = 4, sessions: int = 0,
        users: Mapping[Role, str] | None = None, **settings: object,
    ) -> None:  # fmt: skip
        self.root, self.nats_url = root, nats_url
        self.marks, logs = root / "marks", root / "logs"
        for directory in (self.marks, logs, root / "data"):
            directory.mkdir(parents=True, exist_ok=True)
        routes = root / "routes.yaml"
        routes.write_text(ROUTES.format(workload=workload, concurrency=concurrency, sessions=max(1, sessions),
                                        price=PRICE_PER_GPU_HOUR))  # fmt: skip
        settings = {"test_marks": str(self.marks), "local_pool_size": concurrency + sessions, **settings}
        env = service_env(nats_url, root / "data", routes, **settings)
        self.replicas = int(env.get("GPURELAY_NATS_REPLICAS", "1"))
        ns = Namespace(str(settings.get("namespace", "")))

        def own(service: Role) -> dict[str, str]:
            return env | (identity_env(service, ns, users) if users else {})

        self.gateway = ServiceProcess("gateway", own("gateway"), logs / "gateway.log")
        self.dispatcher = ServiceProcess("dispatcher", own("dispatcher"), logs / "dispatcher.log")
        self.notifier = ServiceProcess("notifier", own("notifier"), logs / "notifier.log")

    @property
    def services(self) -> list[ServiceProcess]:
        """The three services."""
        return [self.gateway, self.dispatcher, self.notifier]

    @property
    def settings(self) -> BaseServiceSettings:
        """The settings every service shares (namespace, replicas), for the test's own reads."""
        return BaseServiceSettings(profile="test", nats_url=self.nats_url, nats_replicas=self.replicas)

    @property
    def pricing(self) -> Pricing:
        """What the dispatcher prices GPU time with (the fold needs it)."""
        return route_pricing({"pose": PRICE_PER_GPU_HOUR})

    async def start(self, nc: NatsClient) -> None:
        """Declare the streams and buckets, start the three services together, wait until each is ready."""
        await declare_all(nc.jetstream(timeout=10.0), self.settings)
        for service in self.services:
            service.launch()
        await asyncio.gather(*(service.ready() for service in self.services))

    def stop(self) -> None:
        """Stop the three services (each by its pid)."""
        for service in reversed(self.services):
            service.stop()

    async def tenant(self, nc: NatsClient, name: str = "acme") -> str:
        """A new API key of tenant ``name``."""
        store = ApiKeyStore(await nc.jetstream().key_value(self.settings.ns.bucket(KV_APIKEYS)))
        _, key = await store.create(name)
        return key

    def release(self) -> None:
        """Let every :func:`~bench.harness.fault_workloads.held` run finish."""
        (self.marks / "go").write_text("go")

    def step(self, job_id: str) -> int:
        """The latest step a :func:`~bench.harness.fault_workloads.held` run of ``job_id`` logged (0: none)."""
        try:
            return int((self.marks / f"{job_id}.step").read_text())
        except (OSError, ValueError):
            return 0

    def running(self, job_id: str) -> bool:
        """Whether an attempt of ``job_id`` has started running its workload."""
        return any(self.marks.glob(f"{job_id}.a*.running"))
