"""The failure a workload raises when another attempt cannot help (:class:`PermanentError`).

Kept apart from the runner (:mod:`modal_workers.runtime.worker_runtime`, which re-exports it) so that the
runtime's own parts, such as the session's start, can raise it without importing the runner.
"""

from __future__ import annotations


class PermanentError(Exception):
    """A failure another attempt cannot fix (bad input): ``code`` and a user-facing ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
