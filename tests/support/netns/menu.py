"""The faults of the suite (issue 33's menu, after Jepsen's), each made against a live deployment.

Each function looks at the deployment now (which node leads JOBS) and returns a :class:`Fault`: how
to inject it, how to heal it and how long it lasts. :data:`MENU` lists them in the order the suite
runs them; the soak goes round it more than once, longer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from contracts.streams import JOBS
from tests.support.netns.proxy import Impairment
from tests.support.netns.scenario import NATS_HOSTS, Deployment, Fault

FAULT_S = 10.0
PAUSE_S = 15.0
CLOCK_STEP_S = 90
SLOW = Impairment(delay_s=0.1, jitter_s=0.05, loss=0.05)
"""100 ms ± 50 ms each way and 5 % of chunks held a retransmission timeout (``netem delay 100ms 50ms loss 5%``)."""


async def jobs_leader(hosts: Deployment) -> str:
    """The NATS host leading JOBS now."""
    js = hosts.nc.jetstream(timeout=10.0)
    return (await hosts.cluster.leader(js, hosts.stack.settings.ns.stream(JOBS))).host_name


async def nats_node_partitioned(hosts: Deployment, scale: float = 1.0) -> Fault:
    """The node leading JOBS cut off from the other two (iptables DROP both ways; clients still reach it)."""
    leader = await jobs_leader(hosts)
    others = [h for h in NATS_HOSTS if h != leader]
    return Fault(f"NATS node ({leader}, JOBS leader) partitioned from the other two",
                 lambda: hosts.faults.partition(leader, others), hosts.faults.heal, FAULT_S * scale)  # fmt: skip


async def dispatcher_partitioned(hosts: Deployment, scale: float = 1.0) -> Fault:
    """Dispatcher ``d1`` (and its worker pool) cut off from all three NATS nodes (blackhole routes)."""
    return Fault("dispatcher d1 partitioned from NATS", lambda: hosts.faults.blackhole("d1", NATS_HOSTS),
                 hosts.faults.heal, FAULT_S * scale)  # fmt: skip


async def slow_link(hosts: Deployment, scale: float = 1.0) -> Fault:
    """Every connection of node ``n2`` (clients and routes) through the proxy at :data:`SLOW`."""
    return Fault("n2's link 100 ± 50 ms, 5 % loss", lambda: hosts.proxy.impair(SLOW), hosts.proxy.clear,
                 FAULT_S * scale)  # fmt: skip


async def paused(hosts: Deployment, scale: float = 1.0) -> Fault:
    """Node ``n3`` and dispatcher ``d2`` stopped (SIGSTOP) for :data:`PAUSE_S`."""
    node, dispatcher = hosts.cluster.node("n3"), hosts.stack["d2"]

    def pause() -> None:
        node.pause()
        dispatcher.pause()

    def resume() -> None:
        node.resume()
        dispatcher.resume()

    return Fault(f"n3 and d2 paused (SIGSTOP) {PAUSE_S:g} s", pause, resume, PAUSE_S)


async def leader_killed(hosts: Deployment, scale: float = 1.0) -> Fault:
    """The node leading JOBS SIGKILLed, started again (same store) after the fault's time."""
    node = hosts.cluster.node(await jobs_leader(hosts))
    return Fault(f"JOBS leader ({node.host_name}) killed", node.kill, node.launch, FAULT_S * scale)


async def clock_stepped(hosts: Deployment, scale: float = 1.0) -> Fault:
    """Dispatcher host ``d2``'s wall clock stepped :data:`CLOCK_STEP_S` ahead, then back."""
    clock = hosts.stack.clock
    assert clock is not None, "libfaketime is not installed"
    return Fault(f"d2's clock stepped +{CLOCK_STEP_S} s, then back", lambda: clock.step(CLOCK_STEP_S),
                 lambda: clock.step(0), FAULT_S * scale)  # fmt: skip


MENU: list[Callable[[Deployment, float], Awaitable[Fault]]] = [
    nats_node_partitioned, dispatcher_partitioned, slow_link, paused, leader_killed, clock_stepped,
]  # fmt: skip
