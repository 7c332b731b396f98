"""The platform's own NATS traffic, counted (not timed): a job-only run, a submitted job, the stack at rest.

A subscriber on ``>`` (:class:`~bench.harness.message_counter.MessageCounter`) counts every message
``gpurelay dev``'s stack routes through its nats-server. Counts hold on a loaded machine where timings
do not: a pull that spins, an INFO poll, a request or an ack per event shows up as messages, so a
regression fails here. A job's window holds its whole tail (its record, its queue entry, its run time
tallied, the fan-out's held ack). BENCHMARKS.md (``bench/platform_cost.py``) has the figures.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from bench.harness.message_counter import Tally, bucket_of, kind_of
from bench.harness.platform_runs import at_rest, embedded_stack, job_only, submitted
from bench.platform_cost import job_events
from services.notifier.webhooks.fanout import FANOUT_DURABLE
from services.notifier.webhooks.fanout_acks import EVERY_S

pytestmark = pytest.mark.slow

JOB_ONLY_BUDGET = 68
"""Messages of one no-op job from ``POST /v1/jobs`` (its input uploaded before) to its settled end, no
follower (the smaller of :data:`RUNS`): 56 measured, main in the same runs 61 before the fold read JOBS
itself instead of a sourced copy (each event's delivery into the copy); 65-67 before that, 70-71 before
job.queued lingered with the launch (its record write, reply and republish); 70-72 before the gateway kept
completed uploads' records (the upload's KV read at submit and its reply); 75-76 before a lone tenant's
start stopped writing the fair clock; the history of earlier cuts is in git and in BENCHMARKS.md's
notes. What the 56 are: its 5 events, each stored, folded (delivered, acked) and fanned out;
the record written twice (created by the gateway; queued, launched and ended by the fold in one
batch), each with its reply and republish; its queue entry's three writes, a ticket (which reads
the record once), the tally of its run time and GPU-seconds, one held fan-out ack, one fold ack as a request
(``services/dispatcher/fold/acks.py``) and the rest traffic of the second the window lasts for that ack
(a fold partition's pin given up: the 8 partitions renew their pulls together every 30 s, 16 messages
more when a window meets that). The SSE hub has no consumer while no connection follows. Issue 34's
target is 30; what is left is in BENCHMARKS.md."""
JOB_ONLY_S = 1.1
"""How long a job-only window lasts here (1.01-1.08 s: the fan-out's held ack a second after its first event)."""
SUBMITTED_FIXED, SUBMITTED_PER_EVENT, SUBMITTED_S = 70, 13.0, 3.0
"""A lap_compare job as ``gpurelay submit`` runs it (two uploads, the job, an SSE follower): its events
(mostly ``job.progress``, as many as the machine's speed makes) cost ~10 each past the fixed 70 since a
fold batch of progress lingers for more (9.7-10.8 for 21 events, main before it 10.7-11.8 in the same
runs: a record write per progress event; a machine slow enough to space progress past the linger pays
that again, so the budget keeps its margin). Before that ~11.5 each and the rest ~60
(494-852 messages for 38-62 events in windows of 4.2-14 s measured, 11.0-12.4 per event past the
fixed 70 and the idle rate beyond 3 s; main in the same runs 11.6-13.2: a fold ack request and its
reply per batch, 0.7 per event more. Before: 333-647 for 22-48 events, when main was at 15.0-18.5 per
event as the fan-out acked each event and each upload's completion listed its waiting jobs with a
consumer); a job that a loaded machine stretched further gets the idle rate for the rest (one took
22.6 s here: 606 messages for 37 events)."""
REST_BUDGET_PER_S = 3.2
"""Messages per second of the idle stack over 30 s (every long pull renewed once): measured 2.33 after a
job, main in the same run 3.53 before the fold read JOBS itself (the copy's source heartbeat, 1/s); 3.47 after a
job with the quota and run-time views (3.40 with the quotas' alone, 3.27 with neither, in the same
runs: their watches' heartbeats); before them 3.4 after a job (its writes read by the two KV sweeps
once), 3.1 with none (main in the same run: 3.67 and 3.3, with the SSE hub reading with no
connection); 3.8 and 3.3 before that, 5.8 and 5.5 before the quiet KV watches, leases, uploads pulls and
sweeps, 19 to 23 before quiet fold partitions. What is left: the long pulls of the 8 fold partitions, 2
dispatch kinds, the fan-out and the uploads (a request and its 408 each 30 s: 0.8/s); 10 KV watch heartbeats each 15 s
(0.7/s, the quota and run-time views' three among them); the notifier's lease renewals every 5 s
(0.4/s); each KV write sweep's one message get every 15 s (0.4/s). No INFO poll, no consumer made to
find nothing, no SSE hub without a connection. Issue 34's target is 5."""
RUNS = 2
"""Job-only runs measured; the budget holds the smaller (a race that one run in ~50 meets: a ticket that
comes before the dispatcher's mirror of the queue has its entry reads the queue by consumer and a
top-up publishes a ticket more, ~25 messages; any cost every job pays is in both)."""
SETTLE_S = 3.0
"""The job's tail left out of the rest: its fold partitions let go of their pins after 2 s, the tallies
are written after 1 s."""
REST_S = 30.0
FANOUT_ACKS = ("ack", "$JS.ACK.JOBS.notifier_fanout")
POSITION = ("stored publish", "jobs.*.position")
"""A ``job.position``: none for a job that nothing waits ahead of (``job.queued`` carries its place)."""
RECORD_GET = ("stream msg get", "$JS.API.STREAM.MSG.GET.KV_jobs")
"""A read of a job record: one in a job-only run, the ticket's as it starts following the record (the fold
takes the first record's revision from ``job.created``; it read the record there too before)."""
RUNTIMES_GET = ("stream msg get", "$JS.API.STREAM.MSG.GET.KV_dispatch_runtimes")
CREATED = ("stored publish", "jobs.*.created")
WAITS_LISTING = ("consumer create", "$JS.API.CONSUMER.CREATE.KV_dispatcher_waits")
"""A consumer made to list an upload's waiting jobs (two per submitted job before ``kv_scan``). Not every
consumer: the dispatcher's two sweeps of KV ``jobs`` writes (created records, the fold audit: every
15 s) read what a job wrote with a consumer each, in the window when a sweep comes within it."""
WAITS_GET = ("stream msg get", "$JS.API.STREAM.MSG.GET.KV_dispatcher_waits")
"""A read of an upload's wait notes: none when no job named the upload while it was pending (its
completion says so, ``contracts/events/uploads.py``), as ``gpurelay submit`` completes before the job."""
NOT_HUB = (FANOUT_DURABLE, "dispatcher-uploads", "dispatcher-fold-")
"""JOBS' consumers that deliver in a job-only run: the fan-out, the uploads' completions and the fold's
partitions; an SSE hub with no connection has no consumer (issue 34)."""


class Order:
    """The order of the counted messages by (kind, source), to tell who asked what before what."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, msg: Msg) -> None:
        self.seen.append((kind_of(msg.subject, msg.reply, msg.headers), bucket_of(msg.subject, msg.reply)))

    def before(self, what: tuple[str, str], mark: tuple[str, str]) -> int:
        """How many ``what`` came before the first ``mark``."""
        return self.seen[: self.seen.index(mark)].count(what)


def hub_deliveries(job: Tally) -> int:
    """Events delivered on JOBS by a consumer other than :data:`NOT_HUB`."""
    jobs = "$JS.ACK.JOBS."
    return sum(
        n
        for (kind, source), n in job.sources.items()
        if kind == "delivery" and source.startswith(jobs) and not source[len(jobs) :].startswith(NOT_HUB)
    )


def stretched(budget: float, job: Tally, usual_s: float) -> float:
    """``budget`` plus the idle stack's traffic for the time the job's window lasted past ``usual_s``: a
    loaded machine stretches a job (its fold partitions, hub and leases go on meanwhile), not what the
    job itself sends."""
    return budget + REST_BUDGET_PER_S * max(0.0, job.seconds - usual_s)


def fanout_acks_allowed(job: Tally) -> int:
    """One held ack per second the job's events span (the window lasts that span plus the hold): one for
    a job-only run, whose events come within a second; one per event before."""
    return max(1, math.ceil(job.seconds - EVERY_S))


async def test_one_job_and_thirty_idle_seconds_stay_within_their_message_budgets(tmp_path: Path) -> None:
    async with embedded_stack(tmp_path) as stack:
        await job_only(stack)  # warm-up: the pool's first job imports its workload, and quotas are cached
        runs = []
        for _ in range(RUNS):
            order = Order()
            stack.counter.observers.append(order)
            job = await job_only(stack)
            stack.counter.observers.remove(order)
            assert job.kinds["stored publish"] >= 6, job.breakdown()  # the job ran: its events and ticket stored
            assert not job.sources[POSITION], job.breakdown()  # its place came in job.queued
            assert job.sources[FANOUT_ACKS] <= fanout_acks_allowed(job), job.breakdown()
            assert not hub_deliveries(job), job.breakdown()  # no follower: no SSE hub reading
            assert order.before(RUNTIMES_GET, CREATED) == 0, "admission read run times no quota needed"
            runs.append(job)
        assert min(run.sources[RECORD_GET] for run in runs) <= 1, [run.breakdown() for run in runs]
        least = min(runs, key=lambda run: run.total)
        assert least.total <= stretched(JOB_ONLY_BUDGET, least, JOB_ONLY_S), least.breakdown()
        await asyncio.sleep(SETTLE_S)
        rest = await at_rest(stack, REST_S)
        assert rest.total <= REST_BUDGET_PER_S * REST_S, rest.breakdown()
        assert not rest.kinds["consumer info"], rest.breakdown()  # nothing polls a consumer while idle
        whole = await submitted(stack)
    events = job_events(whole)
    assert events >= 8, whole.breakdown()  # the job ran: created … succeeded, its artifacts
    budget = stretched(SUBMITTED_FIXED + SUBMITTED_PER_EVENT * events, whole, SUBMITTED_S)
    assert whole.total <= budget, (events, whole.seconds, whole.breakdown())
    assert whole.sources[FANOUT_ACKS] <= fanout_acks_allowed(whole), whole.breakdown()
    assert not whole.sources[WAITS_LISTING], whole.breakdown()  # the uploads' waiting jobs read by gets
    assert not whole.sources[WAITS_GET], whole.breakdown()  # and only for an awaited upload: none here
