"""The splat live session: 3D Gaussians trained from a robot's camera frames and joint angles.

The route table names it ``modal_workers.splat:run``; the Modal app calls ``warm()`` once per container.
"""

from modal_workers.splat.workload import run, warm

__all__ = ["run", "warm"]
