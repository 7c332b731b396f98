"""The platform's own cost: NATS messages per job and at rest, and the embedded stack's memory at rest.

Runs ``gpurelay dev``'s stack in this process (:mod:`bench.harness.platform_runs`) with a
:class:`~bench.harness.message_counter.MessageCounter` (a subscriber on ``>``) on its nats-server and
counts: a ``lap_compare`` job as ``gpurelay submit`` runs it (two uploads, the job, one SSE follower),
a no-op job from ``POST /v1/jobs`` with its input uploaded before (no follower), and 30 s with no job
and no client. Each job figure's baseline is the job's own events (what the stream stores for it), so
the ratio is messages per event; the breakdown by kind of message goes to the notes.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPEATS, Result, format_table
from bench.harness.catch_up_cost import catch_up_requests
from bench.harness.dev_memory import dev_rss_mb
from bench.harness.message_counter import Tally
from bench.harness.platform_runs import at_rest, embedded_stack, job_only, submitted
from services.dispatcher.fold.partition import QUIET_AFTER_S
from services.dispatcher.fold.partition_pulls import FETCH_WAIT_S

REST_S = 30.0
JOB_ONLY_RUNS = 5
"""Job-only runs (the median is the figure): a run's window may also hold the stack's own periodic
writes (a notifier lease renewed every 5 s; the first job of a kind also writes its fair-share clock),
7 to 15 messages more in about one run in four; the job's own cost is the same in every run."""
CATCH_UP_EVENTS = 1_000
WARM_S = 3.0
SETTLE_S = QUIET_AFTER_S + FETCH_WAIT_S + 1.5
"""The pause before each measured run (4.5 s), so the previous run's tail (a fold partition's pin given
up once it was quiet for QUIET_AFTER_S and its open pull ran out, the SSE follower's consumer deleted, a
tally) is not counted in the next one's window (2 s until 2026-11-30: job-only runs of 56 to 88
messages in one run, the pins of a lap_compare's partitions given up inside them)."""
NOTES = [
    "platform_cost: `gpurelay dev`'s stack in the bench process (gateway, notifier, dispatcher; nats-server "
    "and the local pool as children), a subscriber on `>` counting every message the server routes "
    "(bench/harness/message_counter.py): requests, replies, the messages pull consumers deliver, acks, the "
    "server's API advisories, KV writes and their republish. Jobs: the median of 3 submitted runs and of 5 "
    "job-only runs (3 until 2026-11-30), each run 4.5 s after the one before (2 s until 2026-11-30; since "
    "2026-11-28: the first job-only run after the submitted ones counted their tail, a pin given up and a "
    "follower's consumer deleted, 65-93 messages in two runs that day, 88 on 2026-11-30); the submit run is "
    "a lap_compare job on two synthetic laps (its progress events follow the machine's speed, so its count "
    "varies a little); the job-only run a no-op pose job (deterministic, but for the stack's own periodic writes "
    "that may fall in its window). Baseline: the job's own events. At "
    "rest: 30 s (every long pull renewed once) with no job and no client, after 3 s of warm-up. Memory: VmRSS "
    "summed over every process of `gpurelay dev` started as its own command (bench/harness/dev_memory.py), 3 s "
    "after it said it was ready, no job run (since 2026-11-29; before, the stack in the bench process, whose "
    "pool processes did not import the console script). SSE catch-up: one tap (buffer 256) reading a job's 1,000 "
    "stored events from the start, its requests counted (the leader's end of the catch-up, direct-get batches; "
    "any other message get, stream info, consumer or pull on JOBS would count too); baseline: the same catch-up "
    "by a message get per event (as the notifier reads a JOBS stream without allow_direct). "
    "Targets (lower is better, carried in the names): ≤ 100 "
    "messages per submitted job, ≤ 30 per job-only run, ≤ 5 messages/s at rest, ≤ 600 MB.",
    "platform_cost (quota views, 2026-11-25): the gateway and the dispatcher watch KV quotas instead of "
    "reading a tenant's quota per job (a message get, its reply and an API advisory, twice). Job-only run, "
    "5 runs each, back to back on this machine: 96 messages median (96-101) against 105 (102-106) for main "
    "before it; at rest 3.40 messages/s against 3.27 (the two watches' heartbeats). The medians of 3 above "
    "move more from run to run (a sweep or a pull renewal inside a job's 1 s window adds 4-20).",
    "platform_cost (run-time view, 2026-11-25): the dispatcher watches KV dispatch_runtimes instead of "
    "reading a kind's run times for a job's ETA and again for its run's tally. Job-only run, 5 runs each, "
    "back to back: 95 messages median (93-96) against 99 (96-102) with the quota views alone; at rest 3.47 "
    "messages/s against 3.40 (one watch's heartbeats). At load the two cuts save little: the reads they "
    "remove were cached for a second, or made once per tally flush.",
    "platform_cost (fold linger, 2026-11-25): a fold batch of only job.progress, log, heartbeat or position "
    "events waits up to fold_linger_s (0.25 s) for more on the partition's open pull (since d68b3de a pull "
    "that runs out meanwhile is followed by one for the rest of the wait; not measured again), so a worker's burst "
    "(progress comes at most every 0.1 s) is one record write (a KV write, its reply and the republish) "
    "instead of one each. Submitted lap_compare run, 8 runs each, the two trees alternating on one stack "
    "each: 280.5 messages median (273-297) against 308 (294-317) for main before it, for 21 events (20 once); "
    "KV jobs writes 10-11 against 18-20. The job-only run has no burst (96 median against 96).",
    "platform_cost (pin after a let-go, 2026-11-26): a fold partition pinned again by the replica that let go "
    "of it with everything acknowledged, whose first delivery's consumer sequence follows its own last (no one "
    "was delivered anything meanwhile), does not count the unacknowledged events a dead holder may have left "
    "(a consumer info, its reply and the API advisory per pin; a start takes the consumer's last delivery when "
    "nothing is unacknowledged). Job-only run, 4 runs on one stack per tree, the two trees alternating twice: "
    "93 messages median (89-96) against 96 (96-99) for main before it.",
    "platform_cost (uploads in job.created, 2026-11-26): the gateway's job.created carries the sizes of the "
    "uploads it found complete (upload_sizes), and the dispatcher queues the job on them instead of reading KV "
    "uploads again (a message get and its reply per upload). Job-only run, 4 runs per tree alternating twice: "
    "91 messages median (88-94) against 93 (91-96) for main before it.",
    "platform_cost (usage on its last write, 2026-11-26): a tally adds a tenant's GPU-seconds on the value and "
    "revision its replica wrote last, reading KV tenant_usage only when another writer came between (a message "
    "get and its reply per tally). Job-only run with the uploads change, same runs: 89 messages median (85-94) "
    "against 93 (88-96); the first job of a stack still reads (94).",
    "platform_cost (created record's revision, 2026-11-26): the gateway's job.created carries the revision of "
    "the record it created just before (header Gpurelay-Record-Revision), and the fold makes that record from "
    "the event and writes the next one over the revision instead of reading it back (a message get and its "
    "reply per job; a redelivery, a republished copy or a created with no header still reads). Job-only run, "
    "3 runs on one stack per tree, the two trees alternating twice: 88 messages median (85-94) against 92.5 "
    "(89-102) for main before it; KV jobs reads 1 a run (the ticket's) against 2.",
    "platform_cost (place in job.queued, 2026-11-26): job.queued carries the job's first place in its tenant's "
    "queue and its ETA (the place its entry takes in the replica's mirror as it is queued), so a job that nothing "
    "waits ahead of has no job.position (a stored event, its ack, the source's, the fold's and the fan-out's "
    "deliveries and the fold's ack); job.position still says each move up, a retry's place and a place bettered "
    "by the time the entry is queued. Job-only run, 3 runs a stack, the two trees alternating twice: 82 messages "
    "median (77-87) against 86 (83-92) for main with the created record's revision, 90 (89-94) before both; the "
    "job's events are 5, not 6.",
    "platform_cost (a launch lingers, 2026-11-26): a fold batch of only job.dispatched and job.started waits "
    "fold_linger_s (0.25 s) for what follows, as progress does, so a launch and the worker's first events (a "
    "short job's end) are one record write (a KV write, its reply and the republish) instead of two or three; "
    "the record shows the launch up to 0.25 s after the stream, an end at once. Job-only run, 3 runs a stack, "
    "the two trees alternating twice: 75 messages median (75-76) against 81 (78-81) for main before it; KV "
    "jobs writes 3 against 5. Submitted lap_compare run, same way: 243 median (241-247) against 244 (236-254) "
    "for 18 events, KV jobs writes 9 (8-9) against 11 (10-11): the progress events' spread hides the 6.",
    "platform_cost (a lone tenant's fair clock, 2026-11-26): a start that would only move every SFQ tag by the "
    "same amount (the kind's clock holds the tenant's finish tag alone, at v + 1/weight: a tenant running "
    "alone) is not written to KV dispatch_fair, since the scheduler compares tags and no decision changes. "
    "Job-only run, 3 runs a stack, the two trees alternating twice: 72 messages in all 6 against 75 (75-76) for "
    "main before it (a KV write, its reply and the watch's delivery; with 2 dispatchers the watch delivers "
    "twice). CPU per job at 50 jobs/s, 2 dispatchers, 8 partitions, every process (500 jobs, 4 rounds, the "
    "trees alternating twice, median of 8): 17.6 ms against 18.7, nats-server's share 6.5 against 7.0; at "
    "100 jobs/s the same rounds spread 12.8-18.1 ms in both trees (this VM's speed moved between runs) and "
    "showed no difference beyond it.",
    "platform_cost (completed uploads kept, 2026-11-26): a completed upload's record never changes, so the "
    "gateway keeps those it completed or read (services/gateway/uploads/inputs.py, upload_cache_max) and a "
    "submit naming one reads no KV (a message get and its reply per input). Job-only run, 3 runs a stack, the "
    "two trees alternating twice: 70 messages median (68-70) against 72 (70-72) for main before it; submitted "
    "lap_compare run (two inputs), same way: 236 median (226-241) against 243 (235-253).",
    "platform_cost (queueing lingers, 2026-11-26): job.queued joins the events a fold batch lingers over, so a "
    "job queued on a free slot is one fold write from queued to its end (its queued write, reply and "
    "republish gone); a claim that finds the record still created starts the attempt, as before. Job-only "
    "run, 3 runs a stack, the two trees alternating twice: 67 messages median (65-67) against 70 (all 6) for "
    "main before it, KV jobs writes 2 against 3; submitted lap_compare run at 1.0 s windows 227 (both) "
    "against 228-238.",
    "platform_cost (artifacts linger, 2026-11-27): job.artifact (and a live session's session.result and "
    "session.alert) joins the events a fold batch lingers over, so a workload's files and its end are one "
    "record write (a lap_compare's four artifacts were three writes of their own, each a KV write, its reply "
    "and the republish). Submitted lap_compare run, 3 runs a stack, the two trees alternating twice: 221.5 "
    "messages median (217-236) against 236 (224-248) for main before it, KV jobs writes 4-5 against 6-8; the "
    "job-only run has no artifact (unchanged).",
    "platform_cost (what the counter itself adds, 2026-11-27): nats-server sends an advisory only to a subject "
    "someone listens on (publishAdvisory checks the account's interest), and a KV republish no one follows goes "
    "nowhere; the counter's subscription on `>` is such a listener. Of the job-only run's 67 messages, its 3 "
    "advisories (JetStream API audits, fold partitions' pins and let-gos) and the republish of the gateway's first "
    "record write (no follower yet) would not be sent without it; the figures count them all, as the issue "
    "defines them.",
    "platform_cost (awaited uploads, 2026-11-28): a job or session accepted while an upload it names is pending "
    "marks the upload's record awaited (a compare-and-set before its job.created), and upload.completed carries "
    "the mark in a header, so the dispatcher reads its wait notes (a message get of KV dispatcher_waits, its "
    "reply and the API advisory) only for an upload a job may wait on; gpurelay submit completes its uploads "
    "before the job, so none of its two is. Submitted lap_compare run, 3 runs a stack, the two trees "
    "alternating twice: waits reads 0 against 2 in every run, 231 messages median (225-250) against 242 "
    "(231-256) for main before it. The job-only run counts from its POST, after the upload: unchanged (61, 61 "
    "and 63 in both trees, each run 1.5 s after the one before); its row's fall from run H's 67 is the pause "
    "the runs now take (above), not a cut.",
    "platform_cost (pool processes without the CLI, 2026-11-29): a local pool process is spawned without running "
    "its dispatcher's main module again (services.common.processes.spawning_without_main). spawn runs the "
    "parent's main file in each child, and gpurelay's is the console script, which imports the whole CLI "
    "(FastAPI, the gateway, the notifier, the demo's media): each pool process held about 147 MB, now 85 MB. "
    "`gpurelay dev` at rest (two pool processes), the two trees alternating twice on this machine: 354 and "
    "355 MB against 476 and 476 MB for main before it; its time from start to ready, 3 runs each while a test "
    "suite ran beside it: 6.9-7.7 s against 9.2-11.4 s.",
    "platform_cost (S3 on first use, 2026-11-29): services.common.storage imports its S3 backend (aioboto3, "
    "botocore) when a process first makes or names one, so `gpurelay dev`'s process and its two pool processes, "
    "whose files stay on disk, hold no S3 client (about 17 MB each before; a pool process 66 MB, was 85). "
    "`gpurelay dev` at rest, the two trees alternating twice: 317 and 317 MB against 354 and 355 MB for main "
    "before it.",
    "platform_cost (pool processes forked, 2026-11-29): the local pool forks its processes from multiprocessing's "
    "fork server, which imports what a worker runs once (services/dispatcher/running/local_pool.py, PRELOAD), instead"
    " of spawning each (an interpreter and about a second of imports). A pool of 4 against a real nats-server, 5 "
    "starts per tree in the same minute: 0.05 s and 0.07 s of CPU a start after the first (0.65 s and 0.75 s, the "
    "server's imports) against 1.97-2.03 s and 3.88-3.96 s spawned. `gpurelay dev` at rest, the two trees alternating"
    " twice: RSS 352 and 352 MB against 317 and 318 MB (the fork server is one process more, and each forked process "
    "counts the pages it shares with it), PSS 235 and 235 MB against 261 and 261 (shared pages counted once). The "
    "table's memory row (RSS) was taken before it. The test suite's parallel phase on a fresh clone: 929 s against "
    "999-1051 s for three runs of main before it that day (a CPU-bound phase; its 334 spawned pool processes had used"
    " 596 of its 1,610 CPU-seconds, about 330 of them starting up).",
    "platform_cost (the fold reads JOBS, 2026-11-30): JOBS stores each job event with a slot token (a stream "
    "subject_transform, 32 slots) and the fold's partitions read their slots of JOBS itself, not JOBS_FOLD, "
    "the work-queue copy sourced from it (each event stored and fsynced a second time, delivered into the "
    "copy, the source's 1 s heartbeat). Job-only run, 3 runs a stack, each tree once in the same hour: 56 "
    "messages (56, 56) against 61 (61, 61) for main before it (the 5 deliveries into the copy); at rest 2.33 "
    "messages/s against 3.53 (the copy's source heartbeat). CPU per job at 50 jobs/s, 2 dispatchers, 8 "
    "partitions, every process (500 jobs, 2 rounds a run, the trees alternating three times, median of 6; "
    "this VM ran slow that hour): 23.5 ms (21.5-25.1) against 25.0 (22.0-27.2), nats-server's share 8.2 ms "
    "(7.6-8.7) against 9.7 (8.8-10.6), 0.84x; p50 created -> started 12.0 ms against 13.0.",
    "platform_cost (progress four a second, 2026-11-30): a workload's progress reports are throttled to one per "
    "0.25 s, not 0.1 s (modal_workers/runtime/progress.py; the first, any 100 % and the last still go). Each "
    "report is a stored event: its publish and reply, the fold's delivery and ack, the fan-out's delivery and "
    "each follower's, about 6 messages; the fold wrote the record no more than every fold_linger_s (0.25 s) "
    "anyway. Submitted lap_compare run, 3 runs a stack, the two trees alternating twice: 188.5 messages median "
    "(182-213) against 229.5 (211-243) for main before it, progress events 5-6 against 10-12. The cut is "
    "fewer events, not a cheaper one: a job with no progress (the job-only run) is unchanged.",
    "platform_cost (pending uploads kept, 2026-11-30): a gateway keeps the pending record and revision of each "
    "upload it created (services/gateway/uploads/routes.py, upload_cache_max), and a complete on it writes the "
    "completed record over that revision instead of reading it first (a message get and its reply per upload; "
    "a record changed meanwhile, marked awaited or completed by another gateway, refuses the compare-and-set and "
    "is read then). Submitted lap_compare run (two uploads), 3 runs a stack, the two trees alternating four "
    "times (runs 2.5 s apart twice, 4.5 s twice): 188.5 messages median (185-218) against 191.5 (189-225) for "
    "main before it; the quietest run of each stack 185 against 189. The job-only run counts from its POST, "
    "after the upload: unchanged.",
    "platform_cost (where nats-server's time goes: fsync, 2026-11-30): the same stack as the CPU rows (2 "
    "dispatchers, 8 partitions, 50 jobs/s, 500 jobs, 2 rounds a run), nats-server's sync_interval always (the "
    "default since the durability issue: each stored write fsynced before its ack) against 2m, alternating "
    "twice: nats-server 8.4-9.0 ms of CPU per job against 5.6-5.9, every process 24.3-26.6 ms against "
    "21.8-22.8, p50 created -> started 12.5-15.1 ms against 10.6-11.1. A third of nats-server's share is "
    "the fsyncs of a job's 13 stored writes (6 events and the ticket, 7 KV writes): fewer writes per job, not "
    "a cheaper broker setting, is what lowers it without trading the guarantee.",
]


def job_events(tally: Tally) -> int:
    """The job events the stream stored in ``tally`` (the publishes on ``jobs.…``)."""
    stored = tally.sources.items()
    return sum(n for (kind, source), n in stored if kind == "stored publish" and source.startswith("jobs."))


def _median_run(tallies: list[Tally]) -> Tally:
    ordered = sorted(tallies, key=lambda t: t.total)
    return ordered[len(ordered) // 2]


def _kinds(tally: Tally) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in tally.kinds.most_common())


async def measure() -> list[Result]:
    """Every figure of this benchmark on one fresh embedded stack."""
    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp:
        async with embedded_stack(Path(tmp)) as stack:
            await asyncio.sleep(WARM_S)
            rest = await at_rest(stack, REST_S)
            await submitted(stack)  # warm-up: the first lap_compare imports its libraries
            submits, only = [], []
            for _ in range(REPEATS):
                await asyncio.sleep(SETTLE_S)
                submits.append(await submitted(stack))
            for _ in range(JOB_ONLY_RUNS):
                await asyncio.sleep(SETTLE_S)
                only.append(await job_only(stack))
            catch_up, catch_up_whole = await catch_up_requests(stack, CATCH_UP_EVENTS)
            one_by_one, one_by_one_whole = await catch_up_requests(stack, CATCH_UP_EVENTS, one_get_each=True)
        rss = await dev_rss_mb(Path(tmp) / "dev", WARM_S)  # gpurelay dev as a user starts it, on its own
    assert catch_up_whole, "the catch-up in batches lost or reordered events"
    assert one_by_one_whole, "the catch-up by message gets lost or reordered events"
    submit, job = _median_run(submits), _median_run(only)
    per_s = rest.total / rest.seconds
    NOTES.append(
        f"platform_cost (this run): a submitted lap_compare job, {submit.total} messages for {job_events(submit)} "
        f"events ({_kinds(submit)}); a job-only run, {job.total} for {job_events(job)} ({_kinds(job)}); at rest, "
        f"{per_s:.1f}/s ({_kinds(rest)} in {rest.seconds:.0f} s). Spread: submitted "
        f"{min(t.total for t in submits)}-{max(t.total for t in submits)}, job-only "
        f"{min(t.total for t in only)}-{max(t.total for t in only)}."
    )
    return [
        Result.compare(
            "platform: NATS messages per lap_compare job as gpurelay submit runs it (2 uploads, the job, 1 SSE "
            "follower; baseline: the job's events), target ≤ 100",
            statistics.median(t.total for t in submits),
            "messages",
            job_events(submit),
        ),
        Result.compare(
            "platform: NATS messages per job-only run (POST with an uploaded input → succeeded, no-op workload, "
            "no follower; baseline: the job's events), target ≤ 30",
            statistics.median(t.total for t in only),
            "messages",
            job_events(job),
        ),
        Result.compare(
            f"SSE catch-up of {CATCH_UP_EVENTS:,} stored events, requests to NATS (the stream leader's end, then "
            "direct-get batches of the buffer's room; baseline: a message get per event), target ≤ 10",
            catch_up,
            "requests",
            one_by_one,
        ),
        Result("platform: NATS messages/s at rest, whole embedded stack (target ≤ 5)", per_s, "messages/s"),
        Result("platform: memory at rest, whole embedded stack, every process's RSS (target ≤ 600 MB)", rss, "MB"),
    ]


def run() -> list[Result]:
    """Run the benchmark, print its table and return its figures."""
    results = asyncio.run(measure())
    print(format_table(results))
    return results


if __name__ == "__main__":
    run()
