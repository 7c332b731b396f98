"""``gpurelay dev`` and ``gpurelay demo`` as a person runs them: real processes, real ports."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from services.common.config import BaseServiceSettings, dev_env_path
from tests.support.dev_process import (
    READY_LINE,
    children_of,
    dev_env,
    kill_leftovers,
    read_env_file,
    running_dev,
    wait_gone,
)
from tests.support.lap import frame_count
from tests.support.nats import connect_env

SERVING_LINE = "Ctrl-C stops the demo"


def _port_open(url: str) -> bool:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


async def test_dev_writes_env_serves_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with running_dev(data_dir) as (proc, env):
        assert env["GPURELAY_URL"].startswith("http://127.0.0.1:")
        assert env["GPURELAY_NATS_URL"].startswith("nats://127.0.0.1:")
        assert env["GPURELAY_API_KEY"].startswith("gr_")
        first_key = env["GPURELAY_API_KEY"]
        auth = {"Authorization": f"Bearer {env['GPURELAY_API_KEY']}"}
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], headers=auth, timeout=30) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            # The dev key works, and the notifier answers on the gateway's origin.
            hook = await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
            assert hook.status_code == 201, hook.text
            deliveries = await client.get(f"/v1/webhooks/{hook.json()['id']}/deliveries")
            assert deliveries.status_code == 200, deliveries.text
            # A gateway path asked with a method it lacks is a 405, not a 404 from the notifier.
            wrong = await client.put("/v1/jobs")
            assert (wrong.status_code, wrong.headers["content-type"]) == (405, "application/problem+json")
            assert wrong.headers["allow"] == "GET, HEAD, POST"  # every method of the path
            assert (await client.delete("/v1/webhooks/missing/deliveries")).status_code == 405
            assert (await client.get("/v1/nothing")).status_code == 404
        # `gpurelay status` finds the dispatcher's health in dev.env: the local pool is in its report.
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", "status", "--data-dir", str(data_dir), "--json",
            stdout=asyncio.subprocess.PIPE, env=dev_env(),
        )  # fmt: skip
        report = json.loads((await asyncio.wait_for(status.communicate(), 60))[0])
        assert report["local_pool"]["size"] == 2, report["local_pool"]
        nc = await connect_env(env)
        js = nc.jetstream()
        ack = await js.publish("jobs.acme.job_1.created", b"{}", headers={"Nats-Msg-Id": "persist-1"})
        assert ack.stream == "JOBS"
        await nc.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert not _port_open(env["GPURELAY_NATS_URL"]), "nats-server outlived gpurelay dev"
        assert not _port_open(env["GPURELAY_URL"])
        assert not _port_open(env["GPURELAY_DISPATCHER_URL"])
        assert not dev_env_path(data_dir).exists()

    # Data persists in the data dir across restarts, and the dev key stays the same.
    async with running_dev(data_dir) as (proc, env):
        assert env["GPURELAY_API_KEY"] == first_key
        nc = await connect_env(env)
        info = await nc.jetstream().stream_info("JOBS")
        assert info.state.messages == 1
        await nc.close()
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


def _processes_marked(marker: str) -> list[int]:
    """Ids of live processes whose environment holds ``marker`` (inherited by every child)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def _demo(data_dir: Path, output: Path, *args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    """``gpurelay demo`` in a child process, its stdout and stderr on one pipe."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "demo", "--data-dir", str(data_dir), "--output", str(output), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip


def _check_saved_artifacts(text: str, output: Path, data_dir: Path) -> dict[str, Any]:
    """The job's artifacts lie in ``output/<job id>/``, named in ``text``, equal to what the worker stored."""
    folders = list(output.iterdir())
    assert len(folders) == 1, folders
    assert folders[0].name.startswith("job_"), folders
    job = json.loads((folders[0] / "job.json").read_text())
    assert job["id"] == folders[0].name
    assert job["status"] == "succeeded"
    records = {a["name"]: a for a in job["artifacts"]}
    assert sorted(records) == ["manifest.json", "metrics.json", "overlay.mp4", "overlay.webm"]
    blobs = BaseServiceSettings(data_dir=data_dir).local_storage_dir / "objects"
    for name, record in records.items():
        path = folders[0] / name
        assert str(path) in text, f"the demo does not name {path}"
        data = path.read_bytes()
        assert len(data) == record["size"]
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert (blobs / record["key"]).read_bytes() == data
    assert frame_count(folders[0] / "overlay.mp4") > 10
    metrics = json.loads((folders[0] / "metrics.json").read_text())
    assert metrics["units"].startswith("processed pixels")
    return job


@pytest.mark.timeout(180)
async def test_demo_runs_lap_compare_end_to_end(tmp_path: Path) -> None:
    marker = f"GPURELAY_TEST_DEMO_MARK={uuid.uuid4().hex}"
    name, _, value = marker.partition("=")
    data_dir, output = tmp_path / "data", tmp_path / "out"
    proc = await _demo(data_dir, output, env={**dev_env(), name: value})
    out, _ = await asyncio.wait_for(proc.communicate(), 170)
    text = out.decode()
    assert proc.returncode == 0, text
    assert READY_LINE in text
    assert "demo finished" in text
    assert "lap_time_delta_s" in text
    # The artifacts outlive the stack: saved under the output folder, checked against their records.
    _check_saved_artifacts(text, output, data_dir)
    assert "links above end with the stack" in text
    # The local webhook receiver got the job's events, every signature valid.
    assert "webhook deliveries received" in text
    assert "job.succeeded" in text.split("webhook deliveries received", 1)[1]
    assert "INVALID" not in text
    # Nothing is left behind: no dev.env, and no process the demo started still runs.
    assert not dev_env_path(data_dir).exists(), "the demo's stack did not stop cleanly"
    assert _processes_marked(marker) == [], "processes the demo started are still running"


@pytest.mark.timeout(180)
async def test_demo_serve_keeps_the_stack_until_ctrl_c(tmp_path: Path) -> None:
    data_dir, output = tmp_path / "data", tmp_path / "out"
    proc = await _demo(data_dir, output, "--serve", env=dev_env())
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        while SERVING_LINE not in (seen[-1] if seen else ""):
            line = (await asyncio.wait_for(proc.stdout.readline(), 150)).decode()
            assert line, f"the demo exited instead of serving: {''.join(seen)}"
            seen.append(line)
        job = _check_saved_artifacts("".join(seen), output, data_dir)
        env = read_env_file(dev_env_path(data_dir))
        auth = {"Authorization": f"Bearer {env['GPURELAY_API_KEY']}"}
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], headers=auth, timeout=30) as client:
            served = (await client.get(f"/v1/jobs/{job['id']}")).json()
            overlay = next(a for a in served["artifacts"] if a["name"] == "overlay.mp4")
            download = await client.get(overlay["url"])
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == overlay["sha256"]
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, "".join(seen) + rest.decode()
        assert not _port_open(env["GPURELAY_URL"])
        assert not dev_env_path(data_dir).exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_failed_start_stops_what_did_start(tmp_path: Path) -> None:
    from services.cli.dev import DevStack
    from services.common.nats.server.ports import free_port

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    nats_port = free_port()
    stack = DevStack(data_dir=tmp_path, port=taken.getsockname()[1], nats_port=nats_port)
    try:
        with pytest.raises(OSError, match="in use"):
            await stack.start()
    finally:
        taken.close()
    assert stack.nats is None
    assert not _port_open(f"nats://127.0.0.1:{nats_port}"), "nats-server outlived a failed start"


async def _publish(env: dict[str, str], count: int, start: int = 0) -> list[int]:
    """Publish ``count`` job events to JOBS, each acked; their stream sequences."""
    nc = await connect_env(env)
    try:
        js = nc.jetstream()
        return [
            (await js.publish(f"jobs.acme.job_{i}.created", b"{}", headers={"Nats-Msg-Id": f"m-{i}"})).seq
            for i in range(start, start + count)
        ]
    finally:
        await nc.close()


@pytest.mark.timeout(180)
async def test_sigkill_of_dev_takes_its_children_along_and_a_restart_keeps_the_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    recorded: list[int] = []
    try:
        async with running_dev(data_dir) as (proc, env):
            children = children_of(proc.pid)
            assert any("nats-server" in cmd for cmd in children.values()), children
            (server,) = [pid for pid, cmd in children.items() if "multiprocessing.forkserver" in cmd]
            pool = children_of(server)  # the pool's processes, forked by the fork server
            assert len(pool) >= 2, (children, pool)
            children |= pool
            recorded = list(children)
            assert await _publish(env, 50) == list(range(1, 51))
            proc.send_signal(signal.SIGKILL)
            # wait() also waits for its stdout to close, which the pool workers hold until they die
            assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
            left = await wait_gone(recorded, timeout_s=20)
            assert left == [], f"outlived gpurelay dev: { {pid: children[pid] for pid in left} }"

        async with running_dev(data_dir) as (proc, env):
            assert env["GPURELAY_API_KEY"].startswith("gr_")
            recorded += list(children_of(proc.pid))
            nc = await connect_env(env)
            info = await nc.jetstream().stream_info("JOBS")
            await nc.close()
            assert (info.state.messages, info.state.last_seq) == (50, 50)
            assert await _publish(env, 1, start=50) == [51]
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        kill_leftovers(recorded)


async def _second_dev(data_dir: Path) -> tuple[int | None, str]:
    """Run another ``gpurelay dev`` on ``data_dir``: its exit code (``None`` if it came up) and output."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "services.cli.main", "dev", "--data-dir", str(data_dir), "--port", "0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dev_env(),
    )
    assert proc.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(60):
        while line := (await proc.stdout.readline()).decode():
            seen.append(line)
            if READY_LINE in line:  # it should not have come up: stop it cleanly
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
                return None, "".join(seen)
        return await proc.wait(), "".join(seen)


async def test_a_second_dev_on_a_data_dir_in_use_refuses(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with running_dev(data_dir) as (proc, env):
        nats_before = [pid for pid, cmd in children_of(proc.pid).items() if "nats-server" in cmd]
        code, output = await _second_dev(data_dir)
        assert code is not None, f"a second gpurelay dev came up on the same data dir:\n{output}"
        assert code != 0
        assert "in use" in output
        assert str(proc.pid) in output
        assert "Traceback" not in output
        # The first one is untouched: its dev.env, its nats-server, its gateway.
        assert read_env_file(dev_env_path(data_dir)) == env
        assert [pid for pid, cmd in children_of(proc.pid).items() if "nats-server" in cmd] == nats_before
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], timeout=30) as client:
            assert (await client.get("/readyz")).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_a_stale_nats_server_on_the_store_is_stopped_not_joined(tmp_path: Path) -> None:
    """A nats-server left running by an older run on the same store is ended before a new one starts."""
    from services.common.nats.server.embedded import EmbeddedNats

    data_dir = tmp_path / "data"
    stale = EmbeddedNats(data_dir / "nats").start()
    try:
        nc = await nats.connect(stale.url)
        js = nc.jetstream()
        await js.add_stream(name="JOBS", subjects=["jobs.>", "uploads.>"])  # as dev declares it, roughly
        for i in range(3):
            await js.publish(f"jobs.acme.job_{i}.created", b"x")
        await nc.close()
        async with running_dev(data_dir) as (proc, env):
            assert stale._process is not None
            assert stale._process.poll() is not None, "a second nats-server joined the running one's store"
            nc = await connect_env(env)
            assert (await nc.jetstream().stream_info("JOBS")).state.messages == 3
            await nc.close()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        stale.stop()


HANGING_STOP = """
import asyncio, sys
from services.cli import dev
dev.STOP_GRACE_S = 0.5

class HangingStack:
    async def start(self):
        print("started", flush=True)
        return {}

    async def stop(self):
        await asyncio.sleep(3600)

asyncio.run(dev.run_until_signal(HangingStack()))
"""


async def test_a_stop_that_hangs_is_cut_off_at_the_grace(tmp_path: Path) -> None:
    """A part that will not stop does not keep ``gpurelay dev`` alive past its stop grace."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HANGING_STOP, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=dev_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        assert b"started" in await asyncio.wait_for(proc.stdout.readline(), 30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
