"""The nerf pipeline: photos checked, posed with COLMAP, a NeRF trained and a turntable rendered.

The route table names its stages ``modal_workers.nerf:check``, ``:colmap``, ``:train`` and ``:render``.
"""

from modal_workers.nerf.workload import check, colmap, render, train

__all__ = ["check", "colmap", "render", "train"]
