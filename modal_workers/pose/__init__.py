"""The pose workload: YOLO pose with tracking, court and shuttle detection on a sports video.

The route table names it ``modal_workers.pose:run``.
"""

from modal_workers.pose.workload import run

__all__ = ["run"]
