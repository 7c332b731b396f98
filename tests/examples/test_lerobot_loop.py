"""examples/lerobot_loop.py run as a user runs it (``--sim``: the synthetic arm and its wrist camera)
against the embedded stack: joints through the client's publisher, frames over the session socket,
the real splat workload on the CPU posing the frames from the joints; it prints its live figures and
exits 0 once the session succeeded."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from gpurelay_client import Client

from services.common.processes import preexec_die_with_parent
from tests.support.dashboard import ThreadedStack
from tests.support.example_apps import EXAMPLES, ROOT

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
ROBOT, FRAMES = "arm-loop", 12


def test_the_loop_feeds_a_live_splat_and_prints_its_figures(stack: ThreadedStack) -> None:
    gateway, key = stack.env["GPURELAY_URL"], stack.env["GPURELAY_API_KEY"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
    env |= {"GPURELAY_URL": gateway, "GPURELAY_API_KEY": key, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(EXAMPLES / "lerobot_loop.py"), "--sim", "--robot-id", ROBOT,
               "--frames", str(FRAMES), "--fps", "10", "--steps-per-frame", "2"]  # fmt: skip
    ran = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240, preexec_fn=preexec_die_with_parent()
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    started = re.fullmatch(rf"session (\S+) started for robot {ROBOT}", lines[0])
    assert started is not None, lines
    session_id = started.group(1)
    assert f"{FRAMES} frames sent; stopping (the worker writes its final PLY)" in lines
    assert "live PLY updated" in lines
    assert lines[-1].startswith("session succeeded: ")
    with Client(gateway, api_key=key) as client:
        record = client.sessions.get(session_id)
        joints = client.robots.joints(ROBOT)
    assert (record.status, record.robot_id, record.frames_received) == ("succeeded", ROBOT, FRAMES)
    assert record.metrics["frames_used"] > 0  # the CPU worker drops what it cannot keep up with
    assert record.metrics["frames_without_pose"] == 0  # each frame it took found its joint sample
    assert record.result is not None
    assert record.result["gaussian_count"] > 0
    assert len(joints.items) == FRAMES  # one sample a tick, none dropped
