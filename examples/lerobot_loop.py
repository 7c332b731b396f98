"""A LeRobot control loop feeding a live splat session, with gpurelay's Python client.

Each tick reads the arm's observation as lerobot reports it (each joint's position in degrees under
``<joint>.pos``, the gripper from 0 closed to 100 open, the wrist camera's RGB image under its
name), hands the joints to the client's :class:`~gpurelay_client.JointPublisher` (queued and sent in
batches on a background thread: the loop never waits on the network), and sends the camera frame
over the session socket with its capture time; the worker poses each frame with the joint sample
nearest that time. Once a second it prints the session's live figures; at the end it stops the
session (the worker writes its final PLY) and prints the outcome.

Any robot object with lerobot's ``get_observation()`` works: connect your SO-101 follower with its
wrist camera as lerobot's docs show, and call ``run(client, robot, camera="wrist", ...)``. Without
one, ``--sim`` drives gpurelay's synthetic arm through a rendered scene (it needs this repository's
``modal_workers`` and torch)::

    GPURELAY_URL=http://127.0.0.1:8000 GPURELAY_API_KEY=gr_... python examples/lerobot_loop.py --sim --frames 24
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
from gpurelay_client import Client, JointPublisher, Session, joint_radians

SPLAT_PARAMS = {"joint_tolerance_ms": 250, "joint_wait_ms": 1000, "snapshot_every_s": 1.0}
"""A frame's joint sample may be a quarter second off its capture time (two clocks, one loop period), and
may reach the worker up to a second after the frame (two paths, a busy machine)."""
FIGURES = ("frame_count", "frames_used", "frames_without_pose", "gaussian_count", "steps", "psnr")


class Robot(Protocol):
    """What the loop needs of a lerobot robot."""

    def get_observation(self) -> Mapping[str, Any]: ...


def figures(metrics: Mapping[str, Any]) -> str:
    """The session's live figures as one line."""
    return ", ".join(f"{name} {metrics[name]:.4g}" for name in FIGURES if name in metrics) or "no figures yet"


def send_tick(robot: Robot, camera: str, arm: JointPublisher, session: Session) -> int:
    """One tick: the joints to the publisher, the frame to the session; the frame's ack seq."""
    observation = dict(robot.get_observation())
    captured = time.time()
    image = np.asarray(observation.pop(camera))
    arm.publish({k: v for k, v in observation.items() if k.endswith(".pos")}, ts=captured)
    bgr = np.ascontiguousarray(image[..., ::-1])  # lerobot's cameras give RGB; the JPEG encoder wants BGR
    return session.send_frame(bgr, ts=captured).seq


def run(
    client: Client,
    robot: Robot,
    *,
    camera: str,
    robot_id: str,
    frames: int,
    fps: float = 10.0,
    params: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = print,
) -> Any:
    """Stream ``frames`` ticks at ``fps`` into a new splat session bound to ``robot_id``; its final record
    (``GET /v1/sessions/{id}``: status, figures, result)."""
    with (
        client.robots.publisher(robot_id) as arm,
        client.sessions.start("splat", {**SPLAT_PARAMS, **(params or {})}, robot_id=robot_id) as session,
    ):
        say(f"session {session.id} started for robot {robot_id}")
        period, next_tick, next_report = 1.0 / fps, time.monotonic(), time.monotonic() + 1.0
        for _ in range(frames):
            seq = send_tick(robot, camera, arm, session)
            if time.monotonic() >= next_report:
                next_report += 1.0
                say(f"frame {seq} acked; {figures(session.refresh().metrics)}; joints {arm.stats().sent} sent")
            next_tick += period
            time.sleep(max(0.0, next_tick - time.monotonic()))  # the control loop's own rate
        say(f"{frames} frames sent; stopping (the worker writes its final PLY)")
        session.stop()
        for event in session.events():
            if event.type == "session.snapshot":
                say("live PLY updated")
        client.jobs.wait(session.id, timeout=120)  # the record settles just after the terminal event
        final = session.refresh()
    say(f"session {final.status}: {figures(final.metrics)}; result {final.result}")
    return final


class SimulatedArm:
    """gpurelay's synthetic SO-101 moving along a smooth trajectory, its wrist camera rendering a scene
    of Gaussians: lerobot's observation, without a robot."""

    def __init__(self, size: int = 48, camera: str = "wrist") -> None:
        from modal_workers.splat.camera import CameraRig, Intrinsics
        from modal_workers.splat.kinematics import SO101_JOINTS, synthetic_arm_urdf
        from modal_workers.splat.synth import scene_gaussians

        self.rig = CameraRig.from_urdf(synthetic_arm_urdf(), "camera_link")
        self.intrinsics, self.scene = Intrinsics.from_fov(size, size, 60.0), scene_gaussians()
        self.joints, self.camera, self.started = SO101_JOINTS, camera, time.monotonic()
        still = {f"{name}.pos": 0.0 for name in SO101_JOINTS}  # the gripper's range, as the client maps it
        self.gripper = (joint_radians(still)[-1], joint_radians(still | {"gripper.pos": 100.0})[-1])

    def get_observation(self) -> dict[str, Any]:
        from modal_workers.splat.camera import Camera
        from modal_workers.splat.synth import arm_angles, render_frame

        angles = arm_angles(time.monotonic() - self.started)
        closed, opened = self.gripper
        observation: dict[str, Any] = {
            f"{n}.pos": math.degrees(a) for n, a in zip(self.joints[:-1], angles[:-1], strict=True)
        }
        observation["gripper.pos"] = 100.0 * (angles[-1] - closed) / (opened - closed)
        view = Camera(self.intrinsics, self.rig.camera_to_world(angles))
        observation[self.camera] = render_frame(self.scene, view)
        return observation


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim", action="store_true", help="gpurelay's synthetic arm instead of a robot")
    parser.add_argument("--robot-id", default="arm-1")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--steps-per-frame", type=int, default=30, help="the worker's training steps per frame")
    args = parser.parse_args(argv)
    if not args.sim:
        parser.error("connect your lerobot robot and call run() (see this file's docstring), or pass --sim")
    with Client(timeout=60) as client:  # GPURELAY_URL and GPURELAY_API_KEY from the environment
        final = run(
            client, SimulatedArm(), camera="wrist", robot_id=args.robot_id, frames=args.frames, fps=args.fps,
            params={"steps_per_frame": args.steps_per_frame},
        )  # fmt: skip
    raise SystemExit(0 if final.status == "succeeded" else 1)


if __name__ == "__main__":
    main()
