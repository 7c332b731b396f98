"""A paused process, the fault a broker client meets most: nats-server, then a dispatcher replica,
stopped with SIGSTOP for 15 s mid-load and resumed.

Jobs log a step every 100 ms (events are published while the pause lasts), SSE readers follow each
job, a webhook receiver verifies every delivery and a live session has frames before and after the
pause. Once resumed, within 30 s every service answers; every job reaches a terminal state with its
whole lifecycle; the session processes every frame; nothing is lost; and no process spins afterwards
(its CPU over a quiet window stays under :data:`SPIN_SHARE` of a core). A stop after it all is prompt.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from bench.harness.fault_checks import settle
from bench.harness.fault_clients import SseReader, add_endpoint, send_frame, start_session, submit
from bench.harness.fault_stack import FaultStack, connect_test_client
from bench.harness.receivers import Receiver, serve_fast
from bench.harness.service_processes import ServiceProcess
from bench.harness.waiting import wait_for
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.cpu import core_share
from tests.support.sessions import jpeg
from tests.support.stopping import sigstop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
PAUSE_S = 15.0
RECOVER_S = 30.0
QUIET_S = 10.0
SPIN_SHARE = 0.2
"""A process using more than this share of a core while nothing happens is spinning."""
STOP_GRACE_S = 10.0
JOBS = 4
FRAMES = 3


@pytest.fixture
def nats_store(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A nats-server of this test alone (it is paused), file store under the test's tmp dir."""
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)


@pytest.fixture
async def stack(
    tmp_path: Path, nats_store: EmbeddedNats
) -> AsyncIterator[tuple[FaultStack, ServiceProcess, NatsClient]]:
    """The three services plus a second dispatcher as processes; ``pose`` jobs are held until released."""
    fault = FaultStack(tmp_path / "stack", nats_store.url, workload="held", concurrency=JOBS, sessions=1)
    dispatcher2 = ServiceProcess("dispatcher", fault.dispatcher.env, tmp_path / "stack" / "logs" / "dispatcher2.log")
    nc = await connect_test_client(nats_store.url)
    try:
        await fault.start(nc)
        await dispatcher2.start()
        yield fault, dispatcher2, nc
    finally:
        for service in (*fault.services, dispatcher2):
            if service.pid is not None:
                os.kill(service.pid, signal.SIGCONT)
        dispatcher2.stop()
        fault.stop()
        await nc.close()


def paused(pid: int | None, seconds: float) -> asyncio.Task[None]:
    """SIGSTOP ``pid`` now and SIGCONT it after ``seconds`` (in the background)."""
    assert pid is not None
    sigstop(pid)

    async def resume() -> None:
        try:
            await asyncio.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    return asyncio.create_task(resume(), name=f"resume {pid}")


@pytest.mark.parametrize("target", ["nats-server", "dispatcher"])
async def test_a_15_s_pause_mid_load_wedges_nothing_and_loses_nothing(
    stack: tuple[FaultStack, ServiceProcess, NatsClient], nats_store: EmbeddedNats, target: str
) -> None:
    fault, dispatcher2, nc = stack
    services = [*fault.services, dispatcher2]
    key = await fault.tenant(nc)
    receiver = Receiver()
    server, base = await serve_fast(receiver)
    receiver.secrets["/hook"] = await add_endpoint(fault, key, f"{base}/hook")
    session_id = await start_session(fault, key)
    seqs = [await send_frame(fault, key, session_id, jpeg(n)) for n in range(FRAMES)]
    job_ids = [await submit(fault, key) for _ in range(JOBS)]
    readers = [SseReader(fault.notifier.url, key, job_id) for job_id in job_ids]
    await wait_for(lambda: all(fault.running(j) for j in job_ids), 60, "every job running")
    await wait_for(lambda: receiver.unique("/hook") >= 3 * JOBS, 30, "deliveries under way")

    steps = {job_id: fault.step(job_id) for job_id in job_ids}
    await paused(nats_store.pid if target == "nats-server" else fault.dispatcher.pid, PAUSE_S)
    resumed = time.monotonic()
    if target == "dispatcher":  # the jobs went on while it slept
        assert all(fault.step(j) > steps[j] for j in job_ids)

    answering = [False] * len(services)

    async def every_service_answers() -> bool:
        answering[:] = [await s.answers_ready() for s in services]
        return all(answering)

    await wait_for(every_service_answers, RECOVER_S, f"every service answering ({answering})", every_s=0.2)
    seqs += [await send_frame(fault, key, session_id, jpeg(FRAMES + n)) for n in range(FRAMES)]
    fault.release()
    result = await settle(nc, fault.settings, job_ids, fault.pricing, {"/hook": receiver}, readers, 120)
    server.close()
    print(result, f"recovered in {time.monotonic() - resumed:.1f} s")
    assert result.problems() == []  # SSE gap-free and in order, lifecycles whole, KV == fold(stream)
    assert (result.terminal, result.webhooks_missing) == (JOBS, 0)
    said = "\n".join(service.log_excerpt(12) for service in services)  # a silence called names its job
    assert await session_result(fault, key, session_id) == seqs, said  # every frame, before and after the pause

    pids = {s.service + str(i): s.pid for i, s in enumerate(services)}
    shares = await core_share({name: pid for name, pid in pids.items() if pid} | {"nats": nats_store.pid or 0}, QUIET_S)
    assert max(shares.values()) < SPIN_SHARE, f"a process spins at rest: {shares}"
    for service in services:  # a SIGTERM still stops each within the grace
        began = time.monotonic()
        service.stop(timeout_s=STOP_GRACE_S)
        took = time.monotonic() - began  # its log names a slow stop's parts (StopClock)
        assert took < STOP_GRACE_S, f"{service.service} took {took:.1f} s to stop:\n{service.log_excerpt()}"


async def session_result(fault: FaultStack, key: str, session_id: str) -> list[int]:
    """Stop the session and wait for its result: the seqs the echo workload processed."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=fault.gateway.url, headers=headers, timeout=10.0) as http:
        stop = await http.post(f"/v1/sessions/{session_id}/stop")
        record: dict[str, object] = (await http.get(f"/v1/jobs/{session_id}")).json()
        assert stop.status_code in (200, 202), f"{record.get('error')} {record.get('timings')}"

        async def terminal() -> bool:
            record.update((await http.get(f"/v1/jobs/{session_id}")).json())
            return record.get("status") in ("succeeded", "failed", "canceled")

        await wait_for(terminal, 60, "the session ending", every_s=0.2)
    assert record["status"] == "succeeded", f"{record.get('error')} {record.get('timings')}"
    result = record["result"]
    assert isinstance(result, dict)
    return list(result["seqs"])
