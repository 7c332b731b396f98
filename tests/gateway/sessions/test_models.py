"""A vlm session may name only the models the deployment allows: the gateway refuses others at creation.

The deployment's default (``GPURELAY_VLM_MODEL``, here a local directory) and the names listed in
``GPURELAY_VLM_MODELS`` are accepted; any other name, or one shaped like a server path, is a 422
naming ``params.model`` before anything is recorded, and the refusal never shows the default's path.
"""

from __future__ import annotations

import pytest

from tests.support.gateway import Tenant

DEFAULT_DIR = "/srv/models/gemma-default"


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    return {"vlm_model": DEFAULT_DIR, "vlm_models": ["org/allowed-vlm"]}


@pytest.mark.parametrize("params", [{}, {"model": "org/allowed-vlm"}])
async def test_the_default_and_listed_models_are_accepted(acme: Tenant, params: dict[str, str]) -> None:
    created = await acme.http.post("/v1/sessions", json={"kind": "vlm", "params": params})
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("model", ["org/unlisted", "srv/models/gemma-default", "google/gemma-3-4b-it"])
async def test_a_model_not_allowed_is_a_422_on_params_model_and_nothing_is_recorded(acme: Tenant, model: str) -> None:
    refused = await acme.http.post("/v1/sessions", json={"kind": "vlm", "params": {"model": model}})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert [e["loc"] for e in problem["errors"]] == [["body", "params", "model"]]
    assert "org/allowed-vlm" in problem["errors"][0]["msg"]
    assert DEFAULT_DIR not in refused.text  # the default's server path is never shown
    listed = await acme.http.get("/v1/jobs")
    assert listed.status_code == 200
    assert listed.json()["items"] == []


async def test_a_splat_session_is_not_checked_for_a_model(acme: Tenant) -> None:
    created = await acme.http.post("/v1/sessions", json={"kind": "splat"})
    assert created.status_code == 201, created.text
