"""Real network faults between separate hosts, one short pass of each, under load.

3 NATS nodes (R3), a gateway, 2 dispatchers (the worker pool) and 2 notifiers, each in its own
network namespace on a bridge (:mod:`tests.support.netns`). In every phase jobs are submitted at
2/s, each followed over SSE (resuming on the other notifier), two live sessions stream frames and
joints, and a verifying webhook receiver gets every event; after the heal the checker
(:mod:`tests.support.netns.checker`) reads everything back: 0 acknowledged jobs lost, 0 SSE gaps,
0 missing webhooks, no attempt run twice at once, every session carried on or ended with a clear
error code. Each phase prints its figures (docs/operations.md, Faults, "On separate hosts").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.netfaults.conftest import assert_nothing_lost, require_faketime, require_netns
from tests.support.netns import menu
from tests.support.netns.scenario import Deployment, deployment

pytestmark = [pytest.mark.netfaults, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hosts(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """The deployment every phase of this module runs on (made once: starting it is most of the cost)."""
    require_netns()
    async with deployment(Path(tmp_path_factory.mktemp("netfaults"))) as made:
        try:
            yield made
        finally:
            made.faults.heal()


async def test_a_nats_node_partitioned_from_the_other_two(hosts: Deployment) -> None:
    assert_nothing_lost(await hosts.phase(await menu.nats_node_partitioned(hosts)))


async def test_a_dispatcher_partitioned_from_nats(hosts: Deployment) -> None:
    assert_nothing_lost(await hosts.phase(await menu.dispatcher_partitioned(hosts)))


async def test_delay_and_loss_on_one_nodes_link(hosts: Deployment) -> None:
    before = await hosts.proxy.figures()
    report = await hosts.phase(await menu.slow_link(hosts))
    after = await hosts.proxy.figures()
    print(f"  proxy on n2: {after.delayed - before.delayed} chunks delayed, {after.lost - before.lost} lost")
    assert after.delayed > before.delayed  # the fault was on the path
    assert after.lost > before.lost
    assert_nothing_lost(report)


async def test_a_nats_node_and_a_dispatcher_paused_15_s(hosts: Deployment) -> None:
    assert_nothing_lost(await hosts.phase(await menu.paused(hosts)))


async def test_the_jobs_leader_killed(hosts: Deployment) -> None:
    assert_nothing_lost(await hosts.phase(await menu.leader_killed(hosts)))


async def test_a_clock_step_of_one_dispatcher_host(hosts: Deployment) -> None:
    require_faketime()
    assert_nothing_lost(await hosts.phase(await menu.clock_stepped(hosts)))
