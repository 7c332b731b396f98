"""The platform's own NATS traffic, counted (not timed): one job-only run, and the embedded stack at rest.

A subscriber on ``>`` (:class:`~bench.harness.message_counter.MessageCounter`) counts every message
``gpurelay dev``'s stack routes through its nats-server. Counts hold on a loaded machine where timings
do not: a pull that spins, an INFO poll or a request per event shows up as messages, so a regression
fails here. BENCHMARKS.md (``bench/platform_cost.py``) has the figures and their breakdown.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness.platform_runs import at_rest, embedded_stack, job_only

pytestmark = pytest.mark.slow

JOB_ONLY_BUDGET = 150
"""Messages of one no-op job from ``POST /v1/jobs`` (its input uploaded before) to its settled end, no
follower: about 130 today for its 6 events (each stored, folded, fanned out and shown to the SSE hub).
The issue's target is 30; what is left is in BENCHMARKS.md's notes."""
REST_BUDGET_PER_S = 9.0
"""Messages per second of the idle stack: measured 6.5 to 7.8 over the ten seconds after a job (6.1 over
thirty), from 19 to 23 before quiet fold partitions (a partition that got nothing for 2 s unpins and
waits in one pull of one event lasting 30 s: 8 partitions cost about 0.5/s, not 16). The rest: KV
watch heartbeats (about 1.5/s), the fold's source heartbeat (1/s), the notifier's lease renewals
(0.6/s), an ephemeral KV_jobs consumer of the sweeps every 15 s with its advisories, a long pull per
other consumer now and then; no INFO poll. Issue 34's target, 5, is not met yet: the KV watch
heartbeats and the source's are what is left of it."""
REST_S = 10.0


async def test_one_job_and_ten_idle_seconds_stay_within_their_message_budgets(tmp_path: Path) -> None:
    async with embedded_stack(tmp_path) as stack:
        await job_only(stack)  # warm-up: the pool's first job imports its workload, and quotas are cached
        job = await job_only(stack)
        assert job.kinds["stored publish"] >= 6, job.breakdown()  # the job ran: its events were stored
        assert job.total <= JOB_ONLY_BUDGET, job.breakdown()
        rest = await at_rest(stack, REST_S)
    assert rest.total <= REST_BUDGET_PER_S * REST_S, rest.breakdown()
    assert not rest.kinds["consumer info"], rest.breakdown()  # nothing polls a consumer while idle
