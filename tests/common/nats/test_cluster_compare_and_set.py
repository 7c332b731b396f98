"""Compare-and-set writes racing on a 3-node cluster, as replicas race in production.

A clustered stream's leader refuses a write whose expected last sequence it cannot judge while another
write of the same subject is in flight (error 10164, beside 10071's plain mismatch), and nats-py's
``kv.create``, refused so, re-reads the key to tell a deleted one and finds nothing yet: it raised
``KeyNotFoundError`` (for about 1 loser in 20 of four racing creates here). :func:`kv_create` and every
fenced publish (:data:`~services.common.nats.publish.FENCED_OUT`) read both as a lost race. A write
that stays in flight (its leader paused away from its quorum) is no race: :func:`kv_write` raises
:class:`WriteInFlight` for it, where nats-py's ``kv.update`` answered a conflict each time.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyWrongLastSequenceError

from contracts.envelope import utc_now
from contracts.events.jobs import JobCanceledPayload
from contracts.ids import new_id
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects, event_token
from services.common.nats.kv_writes import WriteInFlight, kv_create, kv_write
from services.dispatcher.job_events import JobEvents
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.queue_entries import QueueEntry
from tests.support.dispatcher import POSE
from tests.support.stopping import jobs_leader, on_bucket_leader, once_available, pausable_cluster, quorum_lost

REPO = Path(__file__).resolve().parents[3]

RACERS = 4
ROUNDS = 60


async def _race(calls: list[Callable[[], Awaitable[Any]]]) -> Counter[str]:
    """Run ``calls`` at once: how each ended (``ok`` or its exception's name)."""

    async def one(call: Callable[[], Awaitable[Any]]) -> str:
        try:
            await call()
        except Exception as exc:  # noqa: BLE001 - the test counts what comes back
            return type(exc).__name__
        return "ok"

    return Counter(await asyncio.gather(*(one(call) for call in calls)))


async def test_racing_creates_of_a_key_make_it_once_and_every_other_one_is_told_it_exists(tmp_path: Path) -> None:
    async with pausable_cluster(tmp_path / "cluster") as cluster:
        clients = [await nats.connect(node.url) for node in cluster.nodes]
        try:
            await clients[0].jetstream().create_key_value(KeyValueConfig(bucket="claims", replicas=3))
            buckets = [await nc.jetstream().key_value("claims") for nc in clients]
            outcomes: Counter[str] = Counter()
            for round_ in range(ROUNDS):
                creates = [functools.partial(kv_create, buckets[i % 3], f"k{round_}", b"mine") for i in range(RACERS)]
                outcomes += await _race(creates)
            assert outcomes == {"ok": ROUNDS, KeyWrongLastSequenceError.__name__: ROUNDS * (RACERS - 1)}
        finally:
            for nc in clients:
                await nc.close()


async def test_racing_cancels_of_a_job_store_one_and_raise_nothing(tmp_path: Path) -> None:
    """The fold and holders cancel one job at once, from other nodes: one ``job.canceled`` is stored
    (its fence), each publisher is handed that one, none fails on the leader's in-flight refusal."""
    ns = Namespace("t" + new_id("ns")[-10:])
    async with pausable_cluster(tmp_path / "cluster") as cluster:
        await jobs_leader(cluster, ns)
        clients = [await nats.connect(node.url) for node in cluster.nodes]
        try:
            events = [JobEvents(nc.jetstream(timeout=10.0), ns) for nc in clients]
            spec, subjects, js = parse_job_spec(POSE), Subjects(ns), clients[0].jetstream()
            payload = JobCanceledPayload(reason="canceled while it ran")
            outcomes: Counter[str] = Counter()
            for _ in range(ROUNDS // 3):
                record = JobRecord.new(new_id("job"), "acme", spec, utc_now())
                cancels = [
                    functools.partial(events[i % 3].publish_canceled, record, payload, 1 + i % 2) for i in range(RACERS)
                ]  # the fold's (ending attempt 2) and the holder's (attempt 1), twice each
                outcomes += await _race(cancels)
                info = await js.stream_info(ns.stream(JOBS), subjects_filter=subjects.job_events("acme", record.id))
                stored = {event_token(subject): n for subject, n in (info.state.subjects or {}).items()}
                assert stored == {"canceled": 1}  # stored as jobs.….canceled.{slot}
            assert outcomes == {"ok": RACERS * (ROUNDS // 3)}
        finally:
            for nc in clients:
                await nc.close()


async def test_a_write_left_in_flight_by_a_lost_quorum_is_not_taken_for_a_conflict(tmp_path: Path) -> None:
    """The bucket's leader loses its quorum (both followers paused): a compare-and-set times out and stays
    in flight, and the next one on the same revision is refused (10164) while the key still reads as it
    was. That is no conflict to read again and retry at once (a compare-and-set loop spent its every try
    so): :class:`WriteInFlight`, a time-out. With the quorum back, the first write is applied, and the same
    revision is then a conflict."""
    async with pausable_cluster(tmp_path / "cluster") as cluster, on_bucket_leader(cluster, "records") as (nc, leader):
        kv = await nc.jetstream(timeout=1.0).key_value("records")
        revision = await kv_write(kv, "job", b"v0", None)
        assert revision is not None
        with quorum_lost(cluster, leader):
            with pytest.raises(TimeoutError) as first:
                await kv_write(kv, "job", b"v1", revision)
            assert type(first.value) is not WriteInFlight  # the write itself: proposed, unanswered
            with pytest.raises(WriteInFlight):  # not a conflict (None)
                await kv_write(kv, "job", b"v2", revision)
            assert (await kv.get("job")).value == b"v0"  # the key reads as it was
        kv = await nc.jetstream(timeout=10.0).key_value("records")
        assert await once_available(kv_write, kv, "job", b"v3", revision) is None  # v1 applied: a conflict
        entry = await once_available(kv.get, "job")
        assert (entry.value, entry.revision) == (b"v1", revision + 1)


async def test_a_claim_refused_while_another_is_in_flight_is_no_lost_race(tmp_path: Path) -> None:
    """Ticket 7's claim of a queue entry times out on a leader without its quorum; ticket 8's claim of
    the same entry is refused while 7's is in flight. Read as a lost race (nats-py's ``kv.update``), 8
    went on to claim another entry, and the one it left could end up claimed twice over. It is a time-out
    (:class:`WriteInFlight`): the ticket is retried. A delete of the entry at that revision is refused
    alike (nats-py's bare 400: the entry read as moved on). Once 7's claim is applied, 8's is a lost race."""
    async with pausable_cluster(tmp_path / "cluster") as cluster, on_bucket_leader(cluster, "queue") as (nc, leader):
        queue = QueueIndex(await nc.jetstream(timeout=1.0).key_value("queue"))
        entry = QueueEntry(tenant="acme", job_id=new_id("job"), kind="pose", attempt=1, enqueued_at=time.time())
        assert await queue.enqueue(entry)
        revision = queue.revision(entry.key)
        assert revision is not None
        with quorum_lost(cluster, leader):
            with pytest.raises(TimeoutError) as first:
                await queue.claim(entry, revision, 7)
            assert type(first.value) is not WriteInFlight
            with pytest.raises(WriteInFlight):  # not None: no lost race
                await queue.claim(entry, revision, 8)
            with pytest.raises(WriteInFlight):  # not False: the entry has not moved on yet
                await queue.remove(entry.key, revision)
        queue.kv = await nc.jetstream(timeout=10.0).key_value("queue")
        assert await once_available(queue.claim, entry, revision, 8) is None  # 7's claim applied: lost
        assert await once_available(queue.remove, entry.key, revision) is False  # and the entry moved on
        stored = QueueEntry.model_validate_json((await once_available(queue.kv.get, entry.key)).value or b"")
        assert stored.claimed_by == 7


def test_every_compare_and_set_of_a_kv_key_goes_through_kv_update_or_kv_delete() -> None:
    """nats-py's ``kv.update(key, value, last=...)`` and ``kv.delete(key, last=...)`` read an in-flight
    refusal as a conflict; every compare-and-set in the services and workers is :func:`kv_update` (or
    :func:`kv_write`) or :func:`kv_delete` instead."""
    direct: list[str] = []
    for root in ("services", "modal_workers"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("update", "delete")
                    and any(keyword.arg == "last" for keyword in node.keywords)
                ):
                    direct.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert direct == []
