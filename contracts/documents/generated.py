"""Files the code generates and the repository commits: render, write, and a drift check.

The JSON Schemas (``contracts/schema/``), the AsyncAPI document (``docs/asyncapi.json``) and the
OpenAPI document (``docs/openapi.json``) are each a :class:`GeneratedFile`: a path and the function
that builds its document. The text is stable (sorted keys, two-space indent, a final newline), so a
test can compare the committed file with what the code builds now.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

Document = dict[str, Any]


def render_json(document: Document) -> str:
    """Stable text: sorted keys, two-space indent, non-ASCII kept, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class GeneratedFile:
    """A committed JSON file and the function that builds its document."""

    path: Path
    build: Callable[[], Document]

    def render(self) -> str:
        """The text the file should hold."""
        return render_json(self.build())

    def write(self) -> Path:
        """Write the file (only when its text changed); returns its path."""
        text = self.render()
        if not self.path.is_file() or self.path.read_text(encoding="utf-8") != text:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(text, encoding="utf-8")
        return self.path

    def drifted(self) -> bool:
        """Whether the file is missing or differs from what the code builds now."""
        return not self.path.is_file() or self.path.read_text(encoding="utf-8") != self.render()

    def at(self, path: Path) -> GeneratedFile:
        """The same document at another path (a test's copy, ``--out``)."""
        return replace(self, path=path)
