"""Fixtures of the worker tests: the tiny Gemma 3 checkpoint and the adapter loaded from it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from modal_workers.vlm_model import VlmModel


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Gemma 3 saved like a hub checkpoint (see tests/support/tiny_gemma.py)."""
    from tests.support.tiny_gemma import build_tiny_gemma

    return build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma"))


@pytest.fixture(scope="session")
def tiny_vlm(tiny_gemma_dir: Path) -> VlmModel:
    """The tiny model loaded through the adapter, once per test session (offline)."""
    from modal_workers.vlm_model import VlmModel

    return VlmModel.load(str(tiny_gemma_dir))
