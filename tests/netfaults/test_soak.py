"""The network-fault soak: the whole menu, round after round, longer faults, twice the load.

Run only when named (``pytest -m netfaults_long tests/netfaults``; ``make bench`` runs it): it needs
the harness of ``tests/support/netns``, which ``bench/`` may not import. ``GPURELAY_NETFAULTS_ROUNDS``
(default 2) rounds of every fault, each lasting :data:`SCALE` times its short pass, at 4 jobs/s;
every phase is checked as in the short suite, and the totals are printed at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.netfaults.conftest import assert_nothing_lost, require_netns
from tests.support.netns.clock import faketime_library
from tests.support.netns.menu import MENU, clock_stepped
from tests.support.netns.scenario import deployment

pytestmark = [pytest.mark.netfaults_long, pytest.mark.timeout(3600)]
SCALE = 2.0
RATE = 4.0


async def test_every_fault_round_after_round_loses_nothing(tmp_path: Path) -> None:
    require_netns()
    rounds = int(os.environ.get("GPURELAY_NETFAULTS_ROUNDS", "2"))
    menu = [make for make in MENU if make is not clock_stepped or faketime_library()]
    reports = []
    async with deployment(tmp_path) as hosts:
        try:
            for _ in range(rounds):
                for make in menu:
                    reports.append(await hosts.phase(await make(hosts, SCALE), RATE))
        finally:
            hosts.faults.heal()
    acknowledged = sum(r.acknowledged for r in reports)
    print(f"soak: {len(reports)} faults, {sum(r.offered for r in reports)} jobs offered, {acknowledged} acknowledged, "
          f"{sum(r.terminal for r in reports)} terminal, {sum(r.lost for r in reports)} lost")  # fmt: skip
    for report in reports:
        assert_nothing_lost(report)
