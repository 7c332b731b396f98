"""Fixtures of the worker tests: the tiny Gemma 3 loaded through the adapter (its checkpoint: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from modal_workers.vlm_model import VlmModel


@pytest.fixture(scope="session")
def tiny_vlm(tiny_gemma_dir: Path) -> VlmModel:
    """The tiny model loaded through the adapter, once per test session (offline)."""
    from modal_workers.vlm_model import VlmModel

    return VlmModel.load(str(tiny_gemma_dir))
