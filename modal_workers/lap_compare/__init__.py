"""The lap_compare workload: optical flow on one or two lap videos, aligned by DTW.

The route table names it ``modal_workers.lap_compare:run``.
"""

from modal_workers.lap_compare.workload import run

__all__ = ["run"]
