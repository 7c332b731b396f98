"""A live session's recording exported: LeRobotDataset v3, MCAP (Foxglove), Rerun .rrd.

The route table names the ``session_export`` job's workload ``modal_workers.recordings:run``.
"""

from modal_workers.recordings.workload import run

__all__ = ["run"]
