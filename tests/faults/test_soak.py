"""A short soak: 20 jobs while the gateway, the dispatcher and the notifier are each SIGKILLed and
restarted once at a random point; every job terminal, KV == fold(stream), every webhook delivered
(duplicates by ``webhook-id`` allowed: at least once), SSE readers gap-free. ``bench/soak.py`` runs
the long one (100 jobs over two minutes) and reports its figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness.soak import SoakPlan, run_soak

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]


async def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    report = await run_soak(tmp_path, SoakPlan(jobs=20, duration_s=12.0, restarts=1))
    print(report)
    assert report.restarts == {"gateway": 1, "dispatcher": 1, "notifier": 1}
    assert report.audit.problems() == []
    assert report.audit.jobs == report.audit.terminal == 20
    assert report.audit.webhooks_missing == 0
    assert report.audit.webhooks_received == report.audit.webhooks_expected > 20 * 5
