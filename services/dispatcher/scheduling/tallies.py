"""What ended attempts add to KV, summed per replica and written together.

An attempt's GPU-seconds count to its tenant's usage of that UTC day (KV ``tenant_usage``, read by
the daily quota at submit; also to its end user's, when a subject's token submitted the job) and a
success's run time to its kind's run times (KV ``dispatch_runtimes``, the ETA of ``job.position``).
Written per attempt, that was a read and a compare-and-set on each bucket: four round trips for every
job. A replica instead adds them up here and writes every ``tally_flush_interval_s``: one
compare-and-set per tenant-day and one per kind, whatever the number of attempts in between.

What that costs: the quota and the ETA see an attempt up to one interval later, and a replica that
is killed (not stopped: :meth:`Tallies.flush` runs on stop) loses at most one interval of its own
attempts' usage, so the daily quota undercounts by that much. The jobs' own cost, folded from the
stream into their records, loses nothing. What waits is bounded: one number per tenant-day and at
most twice ``eta_window`` run times per kind (more than any size class keeps).
"""

from __future__ import annotations

import logging
from collections import defaultdict

from contracts.quotas import subject_usage_key, usage_key
from services.common.nats.connection import log_failure
from services.common.quotas import QuotaBook
from services.dispatcher.scheduling.queue_entries import QueueEntry
from services.dispatcher.scheduling.run_times import RunTimes, size_class

log = logging.getLogger(__name__)


class Tallies:
    """GPU-seconds by tenant-day and run times by kind, waiting for the next :meth:`flush`."""

    def __init__(self, quotas: QuotaBook, runtimes: RunTimes) -> None:
        self.quotas, self.runtimes = quotas, runtimes
        self._usage: defaultdict[str, float] = defaultdict(float)
        self._runs: defaultdict[str, list[tuple[str, float]]] = defaultdict(list)

    def add(self, entry: QueueEntry, seconds: float, succeeded: bool) -> None:
        """An attempt of ``entry`` held ``seconds`` of GPU (a success's run time feeds the ETA too)."""
        self._usage[usage_key(entry.tenant)] += max(0.0, seconds)
        if entry.subject is not None:
            self._usage[subject_usage_key(entry.tenant, entry.subject)] += max(0.0, seconds)
        if succeeded:
            runs = self._runs[entry.kind]
            runs.append((size_class(entry.input_bytes), seconds))
            del runs[: -2 * self.runtimes.window]  # older than any size class keeps

    @property
    def pending(self) -> int:
        """Tenant-days and kinds with something to write."""
        return len(self._usage) + len(self._runs)

    async def flush(self) -> None:
        """Write what was added since the last flush. What could not be written, or whose write was
        cancelled (a stop), is kept for the next (a cancelled write that landed counts twice: the
        quota errs on the safe side)."""
        for key in list(self._usage):
            seconds = self._usage.pop(key)
            try:
                await self.quotas.add_usage(key, seconds)
            except BaseException as exc:
                self._usage[key] += seconds
                if not isinstance(exc, Exception):
                    raise
                log_failure(log, exc, "usage of %s not written; kept for the next flush", key)
        for kind in list(self._runs):
            observed = self._runs.pop(kind)
            try:
                await self.runtimes.observe(kind, observed)
            except BaseException as exc:
                self._runs[kind][:0] = observed
                if not isinstance(exc, Exception):
                    raise
                log_failure(log, exc, "run times of %s not written; kept for the next flush", kind)
