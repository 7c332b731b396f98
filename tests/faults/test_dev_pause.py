"""``gpurelay dev`` with its nats-server paused (SIGSTOP) for 15 s and resumed: the embedded stack,
every service in one event loop, comes back whole.

Sessions are open when the pause begins (one running, one queued behind it). Once resumed, within
30 s the gateway answers (``/healthz``, ``/readyz`` and the API); the main process does not spin
(its CPU over a quiet window stays under :data:`SPIN_SHARE` of a core); work still moves (the
running session stops and ends, the queued one starts); and SIGTERM stops it all within the grace.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.harness.waiting import wait_for
from services.cli.dev import STOP_GRACE_S
from tests.support.cpu import core_share
from tests.support.dev_process import children_of, running_dev, showing_dev_log
from tests.support.stopping import sigstop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(360)]
PAUSE_S = 15.0
RECOVER_S = 30.0
QUIET_S = 10.0
SPIN_SHARE = 0.2


async def test_a_paused_nats_server_leaves_gpurelay_dev_answering_idle_and_stoppable(tmp_path: Path) -> None:
    async with running_dev(tmp_path / "data") as (proc, env), showing_dev_log(tmp_path / "data"):
        (nats_pid,) = [pid for pid, cmd in children_of(proc.pid).items() if "nats-server" in cmd]
        auth = {"Authorization": f"Bearer {env['GPURELAY_API_KEY']}"}
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], headers=auth, timeout=5.0) as api:

            def status_is(session_id: str, wanted: str) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    return bool((await api.get(f"/v1/jobs/{session_id}")).json()["status"] == wanted)

                return check

            first, second = [(await api.post("/v1/sessions", json={"kind": "splat"})).json()["id"] for _ in "ab"]
            await wait_for(status_is(first, "running"), 60, "the first session running")

            sigstop(nats_pid)
            try:
                await asyncio.sleep(PAUSE_S)
            finally:
                os.kill(nats_pid, signal.SIGCONT)
            resumed = time.monotonic()

            async def answering() -> bool:
                try:
                    codes = [(await api.get(path)).status_code for path in ("/healthz", "/readyz", f"/v1/jobs/{first}")]
                except httpx.HTTPError:
                    return False
                return codes == [200, 200, 200]

            await wait_for(answering, RECOVER_S, "the gateway answering", every_s=0.5)
            print(f"answering {time.monotonic() - resumed:.1f} s after the pause")
            shares = await core_share({"gpurelay dev": proc.pid}, QUIET_S)
            assert shares["gpurelay dev"] < SPIN_SHARE, f"gpurelay dev spins at rest: {shares}"

            assert (await api.post(f"/v1/sessions/{first}/stop")).status_code in (200, 202)

            last: dict[str, Any] = {}

            async def ended() -> dict[str, Any] | None:
                last.update((await api.get(f"/v1/jobs/{first}")).json())
                return last if last["status"] in ("succeeded", "failed", "canceled") else None

            # a loaded machine's splat takes a while over its final outputs: wait for the end, then say how
            # long it took; a timeout says where the session stood (status, progress, last update)
            stopped = time.monotonic()
            try:
                job = await wait_for(ended, 120, "the first session ending", every_s=0.5)
            except AssertionError as late:
                where = {key: last.get(key) for key in ("status", "error", "progress", "updated_at", "attempt")}
                behind = (await api.get(f"/v1/jobs/{second}")).json()
                queued = {key: behind.get(key) for key in ("status", "attempt")}
                raise AssertionError(f"{late}; the session stood at {where}; the queued one at {queued}") from late
            print(f"the stopped session ended {time.monotonic() - stopped:.1f} s after its stop")
            assert job["status"] == "succeeded", job.get("error")
            await wait_for(status_is(second, "running"), 60, "the queued session starting")

        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), STOP_GRACE_S + 5) == 0  # 0: stopped cleanly, not cut off
        assert time.monotonic() - began < STOP_GRACE_S
