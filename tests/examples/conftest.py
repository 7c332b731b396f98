"""Fixtures of the examples' tests: one embedded stack and one Chromium for the whole package.

The stack runs the real workloads on the local pool: ``lap_compare``; ``pose`` with the yaml-built
YOLO pose model (random weights, nothing downloaded: what detects is not under test here); live
``splat`` on the CPU. One attempt each, so a failing job fails at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.browser import launched_chromium, require_chromium
from tests.support.dashboard import ThreadedStack, running_stack

ROOT = Path(__file__).resolve().parents[2]
POSE_MODEL = "yolo26n-pose.yaml"


def routes_yaml() -> str:
    """The deployment's dev routes for lap_compare, pose and splat, with a single attempt."""
    dev = yaml.safe_load((ROOT / "deploy" / "routes.yaml").read_text())["profiles"]["dev"]
    once = {"retries": {"max_attempts": 1}}
    table = {kind: dev[kind] | once for kind in ("lap_compare", "pose", "splat")}
    return str(yaml.safe_dump({"profiles": {"dev": table, "prod": {}}}))


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedStack]:
    """The embedded stack (``gpurelay dev``: gateway with notifier, dispatcher, local pool, NATS)."""
    folder = tmp_path_factory.mktemp("examples")
    with running_stack(folder, routes_yaml(), GPURELAY_POSE_MODEL=POSE_MODEL) as running:
        yield running


@pytest.fixture(scope="package")
def chromium(stack: ThreadedStack) -> Iterator[Any]:
    """Debian's Chromium through Playwright (the browser tests skip where it is missing, fail on CI)."""
    require_chromium()
    with launched_chromium() as browser:
        yield browser
