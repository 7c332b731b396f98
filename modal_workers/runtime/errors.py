"""The failure a workload raises for bad input: :class:`PermanentError` (a code and a message a user can act on).

Its own module so that what the runtime runs before a workload (a session's source, its recording) and
the shared media code can raise it without importing the runtime that catches it.
"""

from __future__ import annotations


class PermanentError(Exception):
    """A failure another attempt cannot fix (bad input): ``code`` and a user-facing ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
