"""The failure a workload raises for bad input: :class:`PermanentError` (a code and a message a user can act on).

Its own module so that what the runtime runs before a workload (a session's source, its recording) and
the shared media code can raise it without importing the runtime that catches it.
"""

from __future__ import annotations

import re

PICTOGRAPHS = re.compile("[\u2600-\u27bf\ufe0f\U0001f300-\U0001faff]\\s*")
"""Emoji and dingbats, with the spaces after them: some libraries put them in their messages (ultralytics'
``❌  Download failure …``), which a page or terminal without the glyph shows as a box."""


class PermanentError(Exception):
    """A failure another attempt cannot fix (bad input): ``code`` and a user-facing ``message`` (its
    pictographs dropped)."""

    def __init__(self, code: str, message: str) -> None:
        message = PICTOGRAPHS.sub("", message)
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
