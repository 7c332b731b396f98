"""The platform's own NATS traffic, counted (not timed): one job-only run, and the embedded stack at rest.

A subscriber on ``>`` (:class:`~bench.harness.message_counter.MessageCounter`) counts every message
``gpurelay dev``'s stack routes through its nats-server. Counts hold on a loaded machine where timings
do not: a pull that spins, an INFO poll or a request per event shows up as messages, so a regression
fails here. BENCHMARKS.md (``bench/platform_cost.py``) has the figures and their breakdown.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.harness.platform_runs import at_rest, embedded_stack, job_only

pytestmark = pytest.mark.slow

JOB_ONLY_BUDGET = 150
"""Messages of one no-op job from ``POST /v1/jobs`` (its input uploaded before) to its settled end, no
follower: about 130 today for its 6 events (each stored, folded, fanned out and shown to the SSE hub).
The issue's target is 30; what is left is in BENCHMARKS.md's notes."""
REST_BUDGET_PER_S = 4.5
"""Messages per second of the idle stack over 30 s (every long pull renewed once): measured 3.8 after a
job (its writes read by the two KV sweeps once), 3.3 with none (bench/platform_cost.py); 5.8 and 5.5
before the quiet KV watches, leases, uploads pulls and sweeps, 19 to 23 before quiet fold partitions.
What is left: the fold's source heartbeat (1/s, nats-server's own, not settable); the long pulls of
the 8 fold partitions, 2 dispatch kinds, the fan-out, the uploads and the SSE hub (a request and its
408 each 30 s: 0.9/s); 7 KV watch heartbeats each 15 s (0.5/s); the SSE hub's pull heartbeats
(0.2/s); the notifier's lease renewals every 5 s (0.4/s); each KV write sweep's one message get every
15 s (0.4/s). No INFO poll, no consumer made to find nothing. Issue 34's target is 5."""
SETTLE_S = 3.0
"""The job's tail left out of the rest: its fold partitions let go of their pins after 2 s, the tallies
are written after 1 s."""
REST_S = 30.0


async def test_one_job_and_thirty_idle_seconds_stay_within_their_message_budgets(tmp_path: Path) -> None:
    async with embedded_stack(tmp_path) as stack:
        await job_only(stack)  # warm-up: the pool's first job imports its workload, and quotas are cached
        job = await job_only(stack)
        assert job.kinds["stored publish"] >= 6, job.breakdown()  # the job ran: its events were stored
        assert job.total <= JOB_ONLY_BUDGET, job.breakdown()
        await asyncio.sleep(SETTLE_S)
        rest = await at_rest(stack, REST_S)
    assert rest.total <= REST_BUDGET_PER_S * REST_S, rest.breakdown()
    assert not rest.kinds["consumer info"], rest.breakdown()  # nothing polls a consumer while idle
