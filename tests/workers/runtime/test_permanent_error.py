"""A permanent error's message is what a user reads (the job's ``error.message``, the dashboard, the CLI):
emoji some libraries put in theirs (ultralytics' ``❌  Download failure …``) are dropped, since a page or
terminal without the glyph shows a box; other symbols stay."""

from __future__ import annotations

from modal_workers.runtime.errors import PermanentError


def test_pictographs_are_dropped_and_other_symbols_kept() -> None:
    error = PermanentError("model_unavailable", "cannot be loaded: ❌  Download failure. ⚠️ Offline? 90° × 2 ≤ 3")
    assert error.message == "cannot be loaded: Download failure. Offline? 90° × 2 ≤ 3"
    assert str(error) == f"model_unavailable: {error.message}"
