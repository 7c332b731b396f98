"""Soak: 100 jobs over about two minutes while the gateway, the dispatcher and the notifier are each
SIGKILLed and restarted three times at random points (seeded), then nothing may be missing.

The scenario is ``bench/harness/soak.py`` (its short version is ``tests/faults/test_soak.py``): the
three services run as their own processes (``gpurelay gateway|dispatcher|notifier``) on a file-store
nats-server; clients submit with an ``Idempotency-Key`` and retry, SSE readers resume with
``Last-Event-ID``, a verifying receiver takes the webhooks. Reported: jobs (all must end terminal),
events in JOBS, restarts, webhook duplicates by ``webhook-id`` (at least once: a delivery whose ack a
crash lost is sent again, with the same id, and a receiver dedupes by it), SSE resumptions, and losses
(events missing from a job's lifecycle, KV records that differ from the fold of the stream, webhooks
never delivered, SSE gaps: the target is 0).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, format_table
from bench.harness.soak import SoakPlan, SoakReport, run_soak

PLAN = SoakPlan(jobs=100, duration_s=120.0, restarts=3, seed=17, steps=20)
NOTES = [
    f"soak: {PLAN.jobs} jobs over {PLAN.duration_s:.0f} s, the gateway, the dispatcher and the notifier each "
    f"SIGKILLed and restarted {PLAN.restarts} times at random points (seed {PLAN.seed}); each job logs {PLAN.steps} "
    "steps 100 ms apart, so about two run at any time; one run, on a file-store "
    "nats-server, every process on the same shared cores. Losses and jobs not terminal are upper bounds (target "
    "0), so the table's target column only holds the jobs that must all end. Duplicates are deliveries sent again "
    "with the same webhook-id after a crash lost their ack: at least once, deduplicated by receivers.",
]


def results(report: SoakReport) -> list[Result]:
    """The figures of one soak."""
    audit = report.audit
    return [
        Result("soak: jobs terminal (all must end)", audit.terminal, "jobs", target=float(report.plan.jobs)),
        Result("soak: events in JOBS", audit.events, "events"),
        Result("soak: service restarts (SIGKILL)", report.total_restarts, "restarts"),
        Result("soak: attempts retried (their run died with a dispatcher)", audit.retried, "attempts"),
        Result("soak: webhooks delivered (distinct webhook-id)", audit.webhooks_received, "webhooks"),
        Result("soak: webhook duplicates by webhook-id (at least once)", audit.webhook_duplicates, "deliveries"),
        Result("soak: SSE resumptions with Last-Event-ID", report.sse_resumptions, "streams"),
        Result("soak: losses (target 0)", audit.losses, "events+webhooks"),
        Result("soak: wall time", report.wall_s, "s"),
    ]


def run() -> list[Result]:
    """Run the soak once."""
    with tempfile.TemporaryDirectory(prefix="gpurelay-soak-") as tmp:
        report = asyncio.run(run_soak(Path(tmp), PLAN))
    for problem in report.audit.problems()[:20]:
        print("   soak problem:", problem, flush=True)
    return results(report)


if __name__ == "__main__":
    print(format_table(run()))
