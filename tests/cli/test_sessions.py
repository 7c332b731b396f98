"""``gpurelay session start|show|frames|stop`` against the real gateway over HTTP and its socket."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from nats.js import JetStreamContext

from contracts.subjects import Namespace
from services.common.nats.server.embedded import EmbeddedNats
from tests.cli.test_submit import cli_env, invoke, make_video
from tests.support.gateway import Gateway, Tenant
from tests.support.sessions import frames_stored, jpeg


@pytest.fixture
async def env(gateway: Gateway, acme: Tenant, nats_server: EmbeddedNats, namespace: Namespace) -> dict[str, str]:
    return cli_env(gateway, acme, nats_server.url, namespace)


async def started(env: dict[str, str], *args: str) -> str:
    """``session start`` with ``args``; the new session's id."""
    result = await invoke(["session", "start", *args], env)
    assert result.exit_code == 0, result.output
    return result.stdout.split()[0]


async def test_start_prints_the_urls_and_show_reads_the_session(env: dict[str, str], acme: Tenant) -> None:
    result = await invoke(["session", "start", "splat", "--robot", "arm-7", "-p", "chunk_every=10"], env)
    assert result.exit_code == 0, result.output
    session_id = result.stdout.split()[0]
    assert "/compat/so100/" in result.stdout
    assert f"/v1/sessions/{session_id}/stream" in result.stdout
    session = (await acme.http.get(f"/v1/sessions/{session_id}")).json()
    assert (session["robot_id"], session["spec"]["params"]["chunk_every"]) == ("arm-7", 10)
    shown = await invoke(["session", "show", session_id], env)
    assert shown.exit_code == 0, shown.output
    assert "0 received" in shown.stdout


async def test_bad_params_are_the_gateways_422(env: dict[str, str]) -> None:
    result = await invoke(["session", "start", "splat", "-p", "chunk_every=-3"], env)
    assert result.exit_code == 1
    assert "422" in result.output
    assert "chunk_every" in result.output


async def test_frames_from_a_directory_arrive_in_name_order(
    env: dict[str, str], tmp_path: Path, js: JetStreamContext, namespace: Namespace
) -> None:
    session_id = await started(env, "vlm")
    images = tmp_path / "images"
    images.mkdir()
    for i in (2, 0, 1):
        (images / f"f{i:03}.jpg").write_bytes(jpeg(i))
    (images / "notes.txt").write_text("not a frame")
    result = await invoke(["session", "frames", session_id, str(images), "--fps", "50"], env)
    assert result.exit_code == 0, result.output
    stored = await frames_stored(js, namespace, "acme", session_id, 3)
    assert [m.data for m in stored] == [jpeg(0), jpeg(1), jpeg(2)]


async def test_a_videos_frames_are_sent_as_jpeg_and_stop_ends_intake(
    env: dict[str, str], tmp_path: Path, js: JetStreamContext, namespace: Namespace, acme: Tenant
) -> None:
    session_id = await started(env, "splat")
    video = make_video(tmp_path / "clip.mp4", frames=5)
    result = await invoke(["session", "frames", session_id, str(video), "--fps", "50", "--stop"], env)
    assert result.exit_code == 0, result.output
    stored = await frames_stored(js, namespace, "acme", session_id, 6)
    kinds = [m.subject.rsplit(".", 1)[1] for m in stored]
    assert kinds == ["frames"] * 5 + ["control"]
    first = cv2.imdecode(np.frombuffer(stored[0].data, np.uint8), cv2.IMREAD_COLOR)
    assert first is not None
    assert first.shape == (48, 64, 3)
    refused = await acme.http.post(
        f"/v1/sessions/{session_id}/frames", content=jpeg(9), headers={"Content-Type": "image/jpeg"}
    )
    assert refused.status_code == 409


async def test_frames_into_a_stopped_session_are_each_refused_and_the_command_exits_1(
    env: dict[str, str], tmp_path: Path
) -> None:
    session_id = await started(env, "vlm")
    assert (await invoke(["session", "stop", session_id], env)).exit_code == 0
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        (images / f"f{i}.jpg").write_bytes(jpeg(i))
    result = await invoke(["session", "frames", session_id, str(images), "--fps", "50"], env)
    assert result.exit_code == 1, result.output
    assert "session_ended" in result.stdout
    assert [line.split()[-2] for line in result.stdout.splitlines() if "refused" in line] == ["2"]


async def test_stop_of_another_tenants_session_is_a_404(env: dict[str, str], globex: Tenant) -> None:
    theirs = (await globex.http.post("/v1/sessions", json={"kind": "vlm"})).json()["id"]
    result = await invoke(["session", "stop", theirs], env)
    assert result.exit_code == 1
    assert "404" in result.output
