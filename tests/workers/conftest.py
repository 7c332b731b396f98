"""Fixtures of the worker tests: the tiny Gemma 3 loaded through the adapter (its checkpoint: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from bench.harness.nerf_scene import View
    from modal_workers.vlm.model import VlmModel


@pytest.fixture(scope="session")
def tiny_vlm(tiny_gemma_dir: Path) -> VlmModel:
    """The tiny model loaded through the adapter, once per test session (offline)."""
    from modal_workers.vlm.model import VlmModel

    return VlmModel.load(str(tiny_gemma_dir))


@pytest.fixture(scope="session")
def nerf_views() -> tuple[list[View], list[bytes]]:
    """The synthetic NeRF scene's 16 ring cameras and their RGBA PNGs, rendered once per test session."""
    from bench.harness.nerf_scene import scene_views

    return scene_views()
