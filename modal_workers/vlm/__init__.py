"""The vlm live session: chunked, stateful vision-language inference on streamed frames.

The route table names it ``modal_workers.vlm:run``; the Modal app calls ``warm()`` once per container.
"""

from modal_workers.vlm.workload import run, warm

__all__ = ["run", "warm"]
