"""What an SSE tap's catch-up costs NATS: the requests it makes to read a job's stored events (direct get
batches after the leader's end, :mod:`services.notifier.sse.catch_up`)."""

from __future__ import annotations

import asyncio

from bench.harness.message_counter import FOLD_DURABLE
from bench.harness.platform_runs import Stack
from contracts.events.jobs import JobLogPayload
from contracts.events.registry import EventType, make_event
from contracts.subjects import Namespace, Subjects
from services.notifier.sse.hub import Hub, job_key
from services.notifier.sse.tap import Tap

SETTLE_S = 2.0
REQUESTS = (
    "stream msg get", "direct get", "stream info",
    "consumer create", "consumer delete", "pull request", "consumer info",
)  # fmt: skip


async def catch_up_requests(stack: Stack, events: int, one_get_each: bool = False) -> tuple[int, bool]:
    """Requests one tap makes to catch up on a job's ``events`` stored events (``one_get_each``: by a
    message get per event, as on a stream without ``allow_direct``), and whether it read them all, in order."""
    assert stack.counter._nc is not None
    nc, js = stack.counter._nc, stack.counter._nc.jetstream()
    subjects, job = Subjects(Namespace("")), f"job_catch_up_{events}_{int(one_get_each)}"
    seqs = []
    for n in range(events):
        payload = JobLogPayload(message=f"line {n}")
        event = make_event(EventType.JOB_LOG, payload, tenant="dev", source="bench", job_id=job)
        seqs.append((await js.publish(subjects.job_event("dev", job, "log"), event.to_json_bytes())).seq)
    hub = Hub(nc, js, "JOBS", "", 64, 5.0)
    await hub.start()
    hub.direct.allowed = not one_get_each
    # The stack's own readers (fan-out, hub) done with them, and this hub's consumer made (for a first
    # follower: the hub reads only while someone follows) and its first pull sent (a pull lasts 30 s),
    # all out of the window: it counts the tap's requests alone.
    await hub.follow(job_key("dev", "-"), NoFollower())
    await asyncio.sleep(SETTLE_S)
    tap = Tap(hub, job_key("dev", job), [subjects.job_events("dev", job)], 0, 256)
    try:
        async with stack.counter.window() as tally, tap:
            got = [item.seq for _ in range(events) if (item := await tap.get(10.0)) is not None]
    finally:
        await hub.stop()
    # On JOBS itself (its name a whole token), not the fold partitions' idle pulls that a window may meet
    requests = sum(n for (kind, source), n in tally.sources.items()
                   if kind in REQUESTS and ".JOBS." in f"{source}." and FOLD_DURABLE not in source)  # fmt: skip
    return requests, got == seqs


class NoFollower:
    """A follower of no job's events: the hub's consumer made (it reads only while someone follows)
    before a window that counts a tap's catch-up alone."""

    def offer(self, item: object) -> None:
        """Nothing comes."""
