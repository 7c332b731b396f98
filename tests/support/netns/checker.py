"""The checker of a fault run: the history of what clients were told, against what was read back.

Given the :class:`~tests.support.netns.history.History` and an :class:`Observed` (read after the
faults healed), :func:`check` classifies every acknowledged job (201) as terminal or lost and lists
every violation of:

* every acknowledged job is in JOBS and terminal, with exactly one terminal event;
* KV ``jobs`` == fold(stream) for each of them;
* no attempt ran twice at once: no attempt number started twice, and no worker event of an attempt
  made (its envelope's time) after a later attempt of the job started (two attempts alive at once;
  the hosts share one clock, but for the clock-step fault);
* every SSE reader read its job's events gap-free and in stream order, to the terminal one;
* every event reached the webhook receiver, nothing else did, and a duplicate is one only by
  ``webhook-id`` (same id, same body);
* every session carried on through the fault (ended ``succeeded`` having processed every frame
  acknowledged to it, but those it reported dropped) or ended with a clear error code.

An ``unknown`` submission may go either way and is only counted. :class:`Report` holds the figures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.harness.fault_reads import Stored, events_brief
from contracts.events.registry import TERMINAL_JOB_EVENTS
from contracts.job_record import JobRecord
from tests.support.netns.history import History

CLEAR_SESSION_ERRORS = frozenset({"worker_lost", "timeout", "events_undeliverable"})
"""Error codes that say why a session ended (the suite's sessions resume a lost worker up to 3 attempts:
``worker_lost`` is every attempt lost)."""


@dataclass
class Observed:
    """What was read back for the jobs of one fault."""

    stored: dict[str, list[Stored]]
    """Each job's events in JOBS, in stream order."""
    kv: dict[str, JobRecord | None]
    folded: dict[str, JobRecord | None]
    """The dispatcher's fold of each job's stored events."""
    webhooks: dict[str, list[tuple[str, bytes]]]
    """Each job's deliveries the receiver accepted: (``webhook-id``, body), in arrival order."""
    sse: dict[str, tuple[list[int], bool]]
    """Each job's SSE reader: the seqs it read, in order, and whether it read the terminal event."""
    kv_history: dict[str, str] = field(default_factory=dict)
    """For a job whose KV record is not the fold of its events: every revision of the record, in brief."""
    fold_left: str = ""
    """What the fold had not folded yet when KV was read, once the wait for it ran out ("": it had folded
    everything stored, and no job waited to be folded again)."""
    queue_entries: dict[str, str] = field(default_factory=dict)
    """For a job that did not end: its KV ``dispatch_queue`` entries, in brief."""


@dataclass
class Report:
    """The figures of one fault and every violation found."""

    fault: str
    offered: int = 0
    acknowledged: int = 0
    failed: int = 0
    unknown: int = 0
    terminal: int = 0
    canceled: int = 0
    """Terminal jobs that ended canceled (the load cancels some: :data:`~tests.support.netns.load.CANCEL_EVERY`)."""
    lost: int = 0
    retried: int = 0
    """Attempts that ended in ``job.retrying`` and were tried again."""
    stale_events: int = 0
    """Events of a superseded attempt stored after a later attempt started (written before, stored late)."""
    sse_gaps: int = 0
    webhooks_expected: int = 0
    webhooks_missing: int = 0
    webhook_duplicates: int = 0
    duplicated_types: Counter[str] = field(default_factory=Counter)
    """The event types of the webhooks delivered more than once, and ``stored twice`` for an event id
    JOBS holds at two sequences (sent again as a new event, not delivered twice): where to look."""
    sessions: Counter[str] = field(default_factory=Counter)
    """How the sessions ended: ``succeeded``, or the error code."""
    frames_acked: int = 0
    recover_s: float | None = None
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The figures on one line."""
        sessions = ", ".join(f"{k} {v}" for k, v in sorted(self.sessions.items())) or "none"
        recover = f"{self.recover_s:.1f} s" if self.recover_s is not None else "–"
        return (
            f"{self.fault}: offered {self.offered}, acknowledged {self.acknowledged}, failed {self.failed}, "
            f"unknown {self.unknown}, terminal {self.terminal} (canceled {self.canceled}), lost {self.lost}, "
            f"retried {self.retried} "
            f"(stale events {self.stale_events}), "
            f"SSE gaps {self.sse_gaps}, webhooks {self.webhooks_expected - self.webhooks_missing}/"
            f"{self.webhooks_expected} (duplicates {self.webhook_duplicates}{self._duplicated()}), "
            f"sessions: {sessions}, "
            f"recovered in {recover}; {len(self.problems)} problems"
        )

    def _duplicated(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.duplicated_types.most_common())
        return f": {kinds}" if kinds else ""


def check(history: History, phase: str, observed: Observed) -> Report:
    """Check every operation of ``phase`` in ``history`` against ``observed``."""
    submits = history.of("submit", phase)
    report = Report(phase, offered=len(submits))
    counts = Counter(op.outcome for op in submits)
    report.acknowledged, report.failed, report.unknown = counts["ok"], counts["fail"], counts["unknown"]
    if observed.fold_left:
        report.problems.append(f"the fold had not caught up when KV was read: {observed.fold_left}")
    for job_id in history.acknowledged_jobs(phase):
        events = observed.stored.get(job_id, [])
        if not events:
            report.lost += 1
            report.problems.append(f"{job_id}: acknowledged (201) but not in JOBS: lost")
            continue
        report.retried += sum(s.event.type == "job.retrying" for s in events)
        report.problems += _job_problems(job_id, events, observed)
        record = observed.kv.get(job_id)
        if record is None or not record.terminal:
            report.lost += 1
        else:
            report.terminal += 1
            report.canceled += record.status == "canceled"
        problems, stale = _attempt_problems(job_id, events)
        report.problems += problems
        report.stale_events += stale
        gaps = _sse_problems(job_id, events, observed.sse.get(job_id))
        report.sse_gaps += len(gaps)
        report.problems += gaps
        _webhooks(report, job_id, events, observed.webhooks.get(job_id, []))
    for op in history.of("session", phase):
        report.problems += _session_problems(report, op.process, op.outcome, op.value)
    return report


def _job_problems(job_id: str, events: list[Stored], observed: Observed) -> list[str]:
    record = observed.kv.get(job_id)
    terminals = [s.event.type for s in events if s.event.type in TERMINAL_JOB_EVENTS]
    problems = []
    if record is None:
        problems.append(f"{job_id}: acknowledged (201) but no KV record")
    elif not record.terminal or not terminals:
        problems.append(f"{job_id}: acknowledged (201) but not terminal (KV {record.status}, stream {terminals}) "
                        f"{observed.queue_entries.get(job_id, '')}".rstrip())  # fmt: skip
    if len(terminals) > 1:
        ended = [f"{s.event.type} #{s.seq} a{s.event.attempt} by {s.event.source}" for s in events
                 if s.event.type in TERMINAL_JOB_EVENTS]  # fmt: skip
        problems.append(f"{job_id}: {len(terminals)} terminal events: {ended}")
    folded = observed.folded.get(job_id)
    if record is not None and record != folded:
        history = observed.kv_history.get(job_id, "")
        problems.append(
            f"{job_id}: KV record != fold(stream): {record.status} vs {folded and folded.status} "
            f"(fields that differ: {record_diff(record, folded)}) {history} {events_brief(events)}"
        )
    return problems


def _attempt_problems(job_id: str, events: list[Stored]) -> tuple[list[str], int]:
    """Two runs of one attempt, or an attempt still running (by its worker's clock) once a later one
    had started; and how many of a superseded attempt's events were stored after a later one started
    (its buffered writes, stored after a heal: not a second run, and the fold must ignore them)."""
    problems, starts, stale, latest = [], dict[int, datetime](), 0, 0
    for stored in events:
        event, attempt = stored.event, stored.event.attempt or 0
        if event.type == "job.started":
            if attempt in starts:
                problems.append(f"{job_id}: attempt {attempt} started twice (the second by {event.source})")
            starts.setdefault(attempt, event.time)
            latest = max(latest, attempt)
        elif attempt and attempt < latest and event.source.startswith("worker"):
            stale += 1
    for stored in events:
        event, attempt = stored.event, stored.event.attempt or 0
        later = [at for other, at in starts.items() if other > attempt]
        if attempt and later and event.source.startswith("worker") and event.time > min(later):
            problems.append(f"{job_id}: attempt {attempt} still ran ({event.type} at {event.time:%H:%M:%S.%f}) "
                            f"after a later attempt started ({min(later):%H:%M:%S.%f})")  # fmt: skip
    return problems, stale


def _sse_problems(job_id: str, events: list[Stored], read: tuple[list[int], bool] | None) -> list[str]:
    if read is None:
        return [f"{job_id}: no SSE reader"]
    seqs, done = read
    expected: list[int] = []
    for stored in events:
        expected.append(stored.seq)
        if stored.event.type in TERMINAL_JOB_EVENTS:
            break
    if not done:
        return [f"{job_id}: the SSE reader never read a terminal event ({len(seqs)} of {len(expected)} read)"]
    if seqs != expected:
        missing = sorted(set(expected) - set(seqs))
        return [f"{job_id}: SSE read {seqs}, the stream holds {expected} (missing {missing})"]
    return []


def _webhooks(report: Report, job_id: str, events: list[Stored], got: list[tuple[str, bytes]]) -> None:
    expected = {s.event.id for s in events}
    bodies: dict[str, set[bytes]] = {}
    for webhook_id, body in got:
        bodies.setdefault(webhook_id, set()).add(body)
    report.webhooks_expected += len(expected)
    missing = expected - bodies.keys()
    report.webhooks_missing += len(missing)
    report.webhook_duplicates += len(got) - len(bodies)
    types = {s.event.id: s.event.type for s in events}
    for webhook_id, n in Counter(webhook_id for webhook_id, _ in got).items():
        if n > 1:
            report.duplicated_types[str(types.get(webhook_id, "unknown"))] += n - 1
    stored_twice = len(events) - len({s.event.id for s in events})
    if stored_twice:
        report.duplicated_types["stored twice"] += stored_twice
    if missing:
        report.problems.append(f"{job_id}: {len(missing)} events never reached the webhook receiver")
    if unexpected := bodies.keys() - expected:
        report.problems.append(f"{job_id}: {len(unexpected)} webhooks with no stored event")
    for webhook_id, seen in bodies.items():
        if len(seen) > 1:
            report.problems.append(f"{job_id}: webhook-id {webhook_id} came with {len(seen)} different bodies")


def _session_problems(report: Report, name: str, outcome: str | None, value: Any) -> list[str]:
    if outcome != "ok" or not isinstance(value, dict):
        report.sessions[f"never ended ({outcome})"] += 1
        return [f"{name}: the session neither carried on nor ended with an error code ({outcome}: {value})"]
    report.frames_acked += len(value["acked"])
    if value["status"] == "succeeded":
        report.sessions["succeeded"] += 1
        unprocessed = sorted(set(value["acked"]) - set(value["processed"]))
        if len(unprocessed) > value["dropped"]:
            return [f"{name}: frames {unprocessed} were acknowledged, never processed, and {value['dropped']} "
                    "reported dropped"]  # fmt: skip
        return []
    code = value.get("error") or "no code"
    report.sessions[code] += 1
    if code not in CLEAR_SESSION_ERRORS:
        return [f"{name}: the session ended {value['status']} with an unclear error: {code}"]
    return []


def record_diff(record: JobRecord, folded: JobRecord | None, width: int = 160) -> str:
    """The top-level fields where ``record`` and ``folded`` differ, each as ``name: kv → fold`` (cut to
    ``width`` characters), so a report says what went wrong, not only that something did."""
    if folded is None:
        return "no fold"
    ours, theirs = record.model_dump(mode="json"), folded.model_dump(mode="json")
    names = [n for n in ours if ours.get(n) != theirs.get(n)]
    return "; ".join(f"{n}: {str(ours.get(n))[:width]} → {str(theirs.get(n))[:width]}" for n in names)


def slowest(history: History, phase: str, observed: Observed, heal_at: float) -> str:
    """The acknowledged job of ``phase`` submitted before its heal that ended last, with when each of its
    events was made, in seconds from the heal (``heal_at``, wall clock; the publishers' clocks): where a
    long recovery went."""
    healed = history.marks[f"{phase}:heal"]
    before = {str(op.value) for op in history.of("submit", phase) if op.outcome == "ok" and op.invoked <= healed}
    stored = observed.stored
    ends = {job: events[-1].event.time.timestamp() for job, events in stored.items() if job in before and events}
    if not ends:
        return "slowest: none"
    job = max(ends, key=lambda j: ends[j])
    steps = ", ".join(f"{s.event.type.removeprefix('job.')} {s.event.time.timestamp() - heal_at:+.1f}"
                      for s in stored[job])  # fmt: skip
    return f"slowest: {job} ({steps} s from the heal)"
