"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.cli.dev import DevStack
from tests.e2e.support import auth
from tests.support.modal_processes import ProcessModal

LOCAL_ROUTES = """
profiles:
  dev:
    splat: &echo
      backend: local
      local: bench.harness.session_echo:run
      function: splat
      timeout_s: 120
      retries: {max_attempts: 1}
      concurrency: 2
    vlm: *echo
  prod: {}
"""
MODAL_ROUTES = """
profiles:
  dev:
    splat:
      backend: modal
      app: gpurelay
      cls: SplatSession
      function: run
      timeout_s: 120
      retries: {max_attempts: 1}
      concurrency: 2
    vlm:
      backend: modal
      app: gpurelay
      cls: VlmSession
      function: run
      timeout_s: 120
      retries: {max_attempts: 1}
      concurrency: 2
  prod: {}
"""
ECHO = "bench.harness.session_echo:run"


@pytest.fixture(params=["local-pool", "gateway-feed"])
def session_path(request: pytest.FixtureRequest) -> str:
    """Where a session's worker runs: the local pool (its feed from NATS), or a Modal-like child process
    (:class:`~tests.support.modal_processes.ProcessModal`) that talks only HTTP/WS to the gateway."""
    return str(request.param)


@pytest.fixture
async def process_modal(tmp_path: Path) -> AsyncIterator[ProcessModal]:
    """Modal's calls as child processes running the echo workload for both session classes."""
    modal = ProcessModal(tmp_path / "modal", tmp_path / "data", {"SplatSession": ECHO, "VlmSession": ECHO})
    try:
        yield modal
    finally:
        await modal.close()


SPLAT_ROUTES = """
profiles:
  dev:
    splat:
      backend: local
      local: modal_workers.splat:run
      function: splat
      timeout_s: 300
      retries: {max_attempts: 1}
      concurrency: 1
  prod: {}
"""


async def _stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, routes: str, modal_client: ProcessModal | None = None
) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    table = tmp_path / "routes.yaml"
    table.write_text(routes)
    monkeypatch.setenv("GPURELAY_ROUTE_TABLE", str(table))
    monkeypatch.setenv("GPURELAY_TEST_MARKS", str(tmp_path))
    dev = DevStack(data_dir=tmp_path / "data", port=0, modal_client=modal_client)
    try:
        env = await dev.start()
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], headers=auth(env), timeout=30) as api:
            yield env, api
    finally:
        await dev.stop()


@pytest.fixture
async def session_stack(
    request: pytest.FixtureRequest,
    session_path: str,
    process_modal: ProcessModal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    """The embedded stack with the echo workload on the session kinds' routes, on ``session_path``.

    Parametrize it indirectly with ``{"ready_gate": True}`` for an echo workload that gets ready only once
    the test lets it (``{session id}.go`` in the marks directory).
    """
    if getattr(request, "param", {}).get("ready_gate"):
        monkeypatch.setenv("GPURELAY_TEST_READY_GATE", "1")
    routes = LOCAL_ROUTES if session_path == "local-pool" else MODAL_ROUTES
    async for stack in _stack(tmp_path, monkeypatch, routes, process_modal):
        yield stack


@pytest.fixture
async def splat_stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    """The embedded stack with the real splat workload; ``gpurelay dev``'s defaults (the synthetic arm).

    Parametrize it indirectly with ``{"resume": True}`` for a route that tries a lost worker's session once
    more (the splat workload resumes).
    """
    monkeypatch.delenv("GPURELAY_SPLAT_URDF", raising=False)
    async for stack in _stack(tmp_path, monkeypatch, _resuming(SPLAT_ROUTES, request)):
        yield stack


def _resuming(routes: str, request: pytest.FixtureRequest) -> str:
    """``routes`` with two attempts a session when the fixture was parametrized with ``{"resume": True}``."""
    return (
        routes.replace("retries: {max_attempts: 1}", RESUMING)
        if getattr(request, "param", {}).get("resume")
        else routes
    )


VLM_ROUTES = """
profiles:
  dev:
    vlm:
      backend: local
      local: modal_workers.vlm:run
      function: vlm
      timeout_s: 120
      retries: {max_attempts: 1}
      concurrency: 2
  prod: {}
"""


@pytest.fixture
async def vlm_stack(
    request: pytest.FixtureRequest, tiny_gemma_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    """The embedded stack running the real vlm workload, the tiny Gemma 3 as the deployment's default.

    Parametrize it indirectly with ``{"delay_s": N}`` to slow every generation by N seconds (the
    workload's test hook ``GPURELAY_VLM_TEST_DELAY_S``), with ``{"resume": True}`` for a route that tries a
    lost worker's session once more (the vlm workload resumes).
    """
    options: dict[str, float] = getattr(request, "param", {})
    _vlm_env(monkeypatch, tiny_gemma_dir, options.get("delay_s"))
    async for stack in _stack(tmp_path, monkeypatch, _resuming(VLM_ROUTES, request)):
        yield stack


def _vlm_env(monkeypatch: pytest.MonkeyPatch, tiny_gemma_dir: Path, delay_s: float | None = None) -> None:
    """The vlm workload's settings: the tiny Gemma 3 as the default, offline; the slow-model hook if asked."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GPURELAY_VLM_MODEL", str(tiny_gemma_dir))
    monkeypatch.setenv("GPURELAY_VLM_MODELS", '["org/also-allowed"]')
    if delay_s is not None:
        monkeypatch.setenv("GPURELAY_VLM_TEST_DELAY_S", str(delay_s))
    else:
        monkeypatch.delenv("GPURELAY_VLM_TEST_DELAY_S", raising=False)


RESUMING = "retries: {max_attempts: 2, backoff_initial_s: 0.5, jitter: 0}"


@pytest.fixture
async def resume_stack(
    request: pytest.FixtureRequest,
    session_path: str,
    process_modal: ProcessModal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    """:func:`session_stack` whose session routes try a lost worker's session once more (2 attempts); the
    echo workload resumes on ``splat``, and ``vlm`` runs its non-resumable twin (``run_once``).

    Parametrize it indirectly with ``{"concurrency": N}`` for N slots a kind (2 otherwise).
    """
    routes = LOCAL_ROUTES if session_path == "local-pool" else MODAL_ROUTES
    routes = routes.replace("retries: {max_attempts: 1}", RESUMING)
    slots = getattr(request, "param", {}).get("concurrency")
    if slots is not None:
        routes = routes.replace("concurrency: 2", f"concurrency: {slots}")
    if session_path == "local-pool":
        routes = routes.replace("    vlm: *echo", f"    vlm: {{<<: *echo, local: '{ECHO}_once'}}")
    else:
        process_modal.workloads["VlmSession"] = f"{ECHO}_once"
    async for stack in _stack(tmp_path, monkeypatch, routes, process_modal):
        yield stack
