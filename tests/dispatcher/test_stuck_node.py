"""A dispatcher whose NATS node stops serving moves to another node and runs the next job.

A node cut off from its cluster (here SIGSTOPped, which keeps its clients' TCP connections, as a
partition does) leaves nats-py where it is. The dispatcher's fold partitions and sweeps tell its
:class:`~services.common.http.nats_failover.StuckServerWatch` each time NATS fails them (a pull whose end
is overdue, a pull or a consumer refused), and the watch moves the connection to a node that serves
JetStream. Without it the dispatcher waits for as long as the node stays stopped, and a job submitted
meanwhile stays ``created``. The stopped node leads neither JOBS nor KV ``jobs`` (chosen so), so the
test's own submission goes through at once; the worker is :class:`~tests.support.scheduling.InstantBackend`
on another node's connection, as a worker on another host would be.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest

from contracts.job_parts import JobStatus
from contracts.streams import JOBS, KV_JOBS
from contracts.subjects import Namespace, Subjects
from services.common.nats import connection
from services.common.nats.declarations import declare_all
from services.common.nats.server.cluster import wait_current
from services.dispatcher.service import Dispatcher
from tests.support.dispatcher import POSE, dispatcher_settings, local_route, read_record, submit, wait_record
from tests.support.scheduling import InstantBackend
from tests.support.stopping import pausable_cluster, sigstop

pytestmark = [pytest.mark.serial, pytest.mark.faults, pytest.mark.timeout(240)]
RUN_ON_WITHIN_S = 90.0
"""How long after the stop a job submitted then must have succeeded (a quiet dispatcher notices when a
pull's end is overdue: its idle pulls last 30 s, then 5 s of grace; then 3 s of failed asks)."""


async def _leaders(js: nats.js.JetStreamContext, names: list[str]) -> set[str]:
    leaders = set()
    for name in names:
        info = await js.stream_info(name)
        assert info.cluster is not None
        assert info.cluster.leader
        leaders.add(info.cluster.leader)
    return leaders


async def test_a_dispatcher_on_a_stopped_node_moves_and_runs_the_next_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node cut off from its cluster still answers PINGs; a stopped one does not, and the service's
    # 10 s pings would find it dead on their own: the dispatcher's pings are made rare here.
    monkeypatch.setattr(connection, "PING_INTERVAL_S", 600.0)
    ns = Namespace()
    subjects = Subjects(ns)
    async with pausable_cluster(tmp_path / "cluster") as cluster:
        settings = dispatcher_settings(cluster.url, ns, tmp_path / "data", nats_replicas=3)
        conns = {node.server_name: await nats.connect(node.url, connect_timeout=2) for node in cluster.nodes}
        dispatcher: Dispatcher | None = None
        try:
            any_js = next(iter(conns.values())).jetstream(timeout=10.0)
            await declare_all(any_js, settings)
            await wait_current(any_js, [ns.stream(JOBS), f"KV_{ns.bucket(KV_JOBS)}"])
            leaders = await _leaders(any_js, [ns.stream(JOBS), f"KV_{ns.bucket(KV_JOBS)}"])
            stuck = next(node for node in cluster.nodes if node.server_name not in leaders)
            other = next(name for name in conns if name != stuck.server_name)
            js = conns[other].jetstream(timeout=10.0)
            jobs_kv = await js.key_value(ns.bucket(KV_JOBS))
            worker = InstantBackend(js, subjects)
            worker.gate.set()
            dispatcher = Dispatcher(
                settings.model_copy(update={"nats_url": stuck.url}),
                routes={"pose": local_route("noop")},
                backends={"local": worker},
            )
            await dispatcher.start()
            assert dispatcher.nc is not None
            assert dispatcher.nats_watch is not None
            assert dispatcher.nc.connected_url is not None
            assert dispatcher.nc.connected_url.port == stuck.port
            before = await submit(js, jobs_kv, subjects, POSE)
            assert (await wait_record(jobs_kv, before, lambda r: r.terminal, 60)).status is JobStatus.SUCCEEDED

            assert stuck.pid is not None
            sigstop(stuck.pid)
            try:
                stopped = asyncio.get_running_loop().time()
                during = await submit(js, jobs_kv, subjects, POSE)
                record = await read_record(jobs_kv, during)
                while not record.terminal:  # read, not watched: a watch's consumer may sit on the stopped node
                    waited = asyncio.get_running_loop().time() - stopped
                    assert waited < RUN_ON_WITHIN_S, f"{during} still {record.status} {waited:.0f} s after the stop"
                    await asyncio.sleep(0.5)
                    record = await read_record(jobs_kv, during)
                print(f"succeeded {asyncio.get_running_loop().time() - stopped:.1f} s after the stop")
                assert record.status is JobStatus.SUCCEEDED
                assert dispatcher.nats_watch.moves >= 1
                assert dispatcher.nc.connected_url is not None
                assert dispatcher.nc.connected_url.port != stuck.port
            finally:
                os.kill(stuck.pid, signal.SIGCONT)
        finally:
            if dispatcher is not None:
                await dispatcher.stop()
            for nc in conns.values():
                await nc.close()
