"""One deployment on separate hosts, and one fault put through it under load (a phase).

:func:`deployment` makes the hosts (3 NATS nodes, a gateway, 2 dispatchers, 2 notifiers), puts
the proxy on ``n2``'s path, starts the cluster (a NATS user per role) and the services (each as its
role), a tenant and a verifying webhook receiver on the test's own address. :meth:`Deployment.phase`
runs one fault: jobs submitted at ``rate``/s, each followed over SSE, and two live sessions streaming
frames and joints, for ``PRE_S``, then the fault for its duration, the heal, ``POST_S`` more; then it
waits for what was acknowledged, reads it all back and checks it (:mod:`tests.support.netns.checker`).
Before each phase the deployment must be whole again: every service ready, every stream's replicas
current.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client as NatsClient

from bench.harness.fault_stack import connect_test_client, operator_options
from bench.harness.receivers import Receiver, serve_fast
from bench.harness.service_processes import ROOT
from bench.harness.waiting import wait_for
from services.common.nats.server.cluster import wait_current, wait_jetstream
from tests.support.nats_deploy import role_passwords
from tests.support.netns.checker import Report, check, slowest
from tests.support.netns.commands import ip
from tests.support.netns.faults import NetFaults
from tests.support.netns.history import History
from tests.support.netns.impair import PathProxy
from tests.support.netns.load import Clients
from tests.support.netns.nats_nodes import CLIENT_PORT, ROUTE_PORT, NsCluster
from tests.support.netns.network import TestNet
from tests.support.netns.observe import observe, recovered
from tests.support.netns.services import HOSTS, NsStack
from tests.support.netns.sessions import LiveSession

NATS_HOSTS = ["n1", "n2", "n3"]
PRE_S, POST_S = 2.0, 2.0
HEALTHY_S = 90.0
SETTLE_S = 120.0
SLOW_RECOVERY_S = 10.0
"""A phase that took longer to recover names its slowest job and when each of its events was made."""
SESSIONS = 2
HOOK = "/hook"
Step = Callable[[], Awaitable[None] | None]


@dataclass(frozen=True)
class Fault:
    """One fault: its name (the report's), how to put it in, how to undo it, how long it lasts."""

    name: str
    inject: Step
    heal: Step
    duration_s: float


@dataclass
class Deployment:
    """Everything one run of the suite talks to and faults."""

    net: TestNet
    cluster: NsCluster
    stack: NsStack
    proxy: PathProxy
    faults: NetFaults
    nc: NatsClient
    clients: Clients
    receiver: Receiver
    history: History

    async def healthy(self) -> None:
        """Wait until every service answers ready and every stream's replicas are current."""
        ready: dict[str, bool] = {}

        async def all_ready() -> bool:
            ready.update(await self.stack.all_ready())
            return all(ready.values())

        await wait_for(all_ready, HEALTHY_S, f"every service ready ({ready})", every_s=0.2)
        js = self.nc.jetstream(timeout=10.0)
        streams = [info.config.name or "" for info in await js.streams_info()]
        await wait_current(js, streams, HEALTHY_S)

    async def phase(self, fault: Fault, rate: float = 2.0) -> Report:
        """Run ``fault`` under ``rate`` jobs/s and two sessions, heal it, then check everything."""
        await self.healthy()
        history, clients, name = self.history, self.clients, fault.name
        history.phase = name
        stop = asyncio.Event()
        load = asyncio.create_task(clients.steady(rate, stop))
        sessions = [LiveSession(clients, f"{name}/session-{i}") for i in range(1, SESSIONS + 1)]
        streaming = [asyncio.create_task(session.run(stop)) for session in sessions]
        await asyncio.sleep(PRE_S)  # load before the fault
        workers = self.session_hosts(name)
        history.mark("fault")
        await _call(fault.inject)
        await asyncio.sleep(fault.duration_s)  # the fault lasts this long, under load
        await _call(fault.heal)
        history.mark("heal")
        heal_at = time.time()
        recovery = asyncio.create_task(recovered(self.nc, self.stack, history, name, SETTLE_S))
        await asyncio.sleep(POST_S)  # load after the heal
        stop.set()
        await load
        await clients.drain()
        await asyncio.gather(*streaming)
        recover_s = await recovery
        jobs = history.acknowledged_jobs(name)
        observed = await observe(self.nc, self.stack, jobs, self.receiver, HOOK, clients.followers, SETTLE_S)
        report = check(history, name, observed)
        report.recover_s = recover_s
        slow = [slowest(history, name, observed, heal_at)] if recover_s > SLOW_RECOVERY_S else []
        endings = [
            f"{op.process}: {_ending(op.value, op.outcome)} (its worker ran on {workers.get(op.key, '?')})"
            for op in history.of("session", name)
        ]  # fmt: skip
        print(report.line(), *endings, *slow, *report.problems[:20], sep="\n  ")
        return report

    def session_hosts(self, phase: str) -> dict[str, str]:
        """The host each running session of ``phase`` has its worker on (the namespace of the pid the echo
        workload left in its mark), by session id."""
        found = {}
        for op in self.history.of("session", phase):
            for mark in self.stack.marks.glob(f"{op.key}.*"):
                netns = ip("netns", "identify", mark.suffix.lstrip("."), check=False).strip()
                found[op.key] = netns.rsplit("-", 1)[-1] or "?"
        return found


def _ending(value: object, outcome: str | None) -> str:
    if not isinstance(value, dict):
        return f"{outcome}: {value}"
    return " ".join(str(value.get(k) or "") for k in ("status", "error", "message")).strip()


async def _call(step: Step) -> None:
    result = step()
    if inspect.isawaitable(result):
        await result


@contextlib.asynccontextmanager
async def deployment(root: Path) -> AsyncIterator[Deployment]:
    """The whole deployment on its hosts, torn down (namespaces and all) however the block ends."""
    net = TestNet([*NATS_HOSTS, *HOSTS]).create()
    cluster: NsCluster | None = None
    stack: NsStack | None = None
    nc: NatsClient | None = None
    clients: Clients | None = None
    server: asyncio.Server | None = None
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        proxy = PathProxy(net, "n2", [CLIENT_PORT, ROUTE_PORT], [ROUTE_PORT], root / "proxy", env)
        await proxy.install()  # before the node starts: every connection of n2 goes through it
        users = role_passwords()  # a user per role, as the committed cluster has
        cluster = NsCluster(net, NATS_HOSTS, root / "nats", users=users).start()
        await wait_jetstream(cluster.url, HEALTHY_S, **operator_options(users))
        nc = await connect_test_client(cluster.url, users)
        stack = NsStack(net, root / "stack", cluster.url, sessions=SESSIONS, users=users)
        await stack.start(nc)
        key = await stack.tenant(nc)
        receiver = Receiver()
        server, base = await serve_fast(receiver, net.client_address)
        hook = f"{base}{HOOK}"
        history = History()
        clients = Clients(history, stack.gateway.url, [n.url for n in stack.notifiers], key)
        answer = await clients.http.post(f"{stack.gateway.url}/v1/webhooks", json={"url": hook, "events": ["job.*"]})
        assert answer.status_code == 201, answer.text
        receiver.secrets[HOOK] = answer.json()["secret"]
        yield Deployment(net, cluster, stack, proxy, NetFaults(net), nc, clients, receiver, history)
    finally:
        if clients is not None:
            clients.history.dump(root / "history.json")
            print(f"the history: {root / 'history.json'}, logs under {root}")
            await clients.close()
        if server is not None:
            server.close()
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)
        if stack is not None:
            stack.stop()
        if cluster is not None:
            cluster.stop()
        net.teardown()
