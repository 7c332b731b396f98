"""The ingest route refuses what a worker must not send: naive times, foreign event ids, foreign artifact keys."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from contracts.event_ids import worker_event_id
from contracts.events.jobs import JobArtifactPayload, JobSucceededPayload
from contracts.events.registry import EventType
from contracts.job_parts import Artifact
from contracts.subjects import Namespace
from tests.gateway.ingest.test_ingest import JOB, event, post, stored_count, token

PROBLEM = "application/problem+json"
MINE = f"results/acme/{JOB}/out.txt"
NOT_MINE = [
    f"results/globex/{JOB}/out.txt",
    "results/acme/job_0002/out.txt",
    f"uploads/acme/{JOB}/out.txt",
    f"results/acme/{JOB}/../../globex/job_9/secret.txt",
    f"results/acme/{JOB}/sub/../../job_0002/x",
    f"results/acme/{JOB}//out.txt",
    f"results/acme/{JOB}/%2e%2e/%2e%2e/globex/job_9/x",
    f"results/acme/{JOB}%2fout.txt",
    f"results/acme/{JOB}/",
    f"/results/acme/{JOB}/out.txt",
    f"results/acme/{JOB}/a\\..\\..\\x",
    f"gw/results/acme/{JOB}/out.txt",
]


def artifact_event(key: str) -> Any:
    payload = JobArtifactPayload(name="out.txt", key=key, size=1)
    return event(EventType.JOB_ARTIFACT, payload)


def refused(response: httpx.Response, status: int = 422) -> list[Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return [e["loc"] for e in response.json()["errors"]]


async def test_an_event_time_without_a_timezone_is_422(
    anonymous: httpx.AsyncClient, js: JetStreamContext, namespace: Namespace
) -> None:
    body = event().model_dump(mode="json", exclude_none=True) | {"time": "2026-11-22T10:00:00"}
    # FastAPI names the union member it validated ("batch" or "event") in the location.
    assert refused(await post(anonymous, {"events": [body]}, token())) == [["body", "batch", "events", 0, "time"]]
    assert refused(await post(anonymous, body, token())) == [["body", "event", "time"]]
    assert await stored_count(js, namespace) == 0


@pytest.mark.parametrize(
    "event_id",
    [f"cancel-{JOB}", f"created-{JOB}", f"{JOB}-a1-failed", f"{JOB}-queued", "free-form",
     "01a20cdd-d97d-73f0-924e-2ea5e13228c4",
     worker_event_id("job_0002", 1, "succeeded"), worker_event_id(JOB, 2, "succeeded")],
)  # fmt: skip
async def test_only_ids_of_the_tokens_own_worker_namespace_are_accepted(
    anonymous: httpx.AsyncClient, js: JetStreamContext, namespace: Namespace, event_id: str
) -> None:
    bad = event().model_copy(update={"id": event_id})
    assert refused(await post(anonymous, [event(), bad], token())) == [["body", "events", 1, "id"]]
    assert await stored_count(js, namespace) == 0


async def test_an_artifact_key_of_the_job_is_accepted(
    anonymous: httpx.AsyncClient, js: JetStreamContext, namespace: Namespace
) -> None:
    done = event(EventType.JOB_SUCCEEDED, JobSucceededPayload(artifacts=(Artifact(name="o", key=MINE, size=1),)))
    response = await post(anonymous, [artifact_event(MINE), done], token())
    assert response.status_code == 202, response.text
    assert await stored_count(js, namespace) == 2


@pytest.mark.parametrize("key", NOT_MINE)
async def test_an_artifact_key_outside_the_jobs_results_is_422(
    anonymous: httpx.AsyncClient, js: JetStreamContext, namespace: Namespace, key: str
) -> None:
    assert refused(await post(anonymous, [artifact_event(key)], token())) == [["body", "events", 0, "data", "key"]]
    artifacts = (Artifact(name="o", key=MINE, size=1), Artifact(name="x", key=key, size=1))
    succeeded = JobSucceededPayload(artifacts=artifacts)
    locs = refused(await post(anonymous, event(EventType.JOB_SUCCEEDED, succeeded), token()))
    assert locs == [["body", "data", "artifacts", 1, "key"]]
    assert await stored_count(js, namespace) == 0


@pytest.mark.parametrize("gateway_overrides", [{"storage_prefix": "gw"}])
async def test_the_storage_prefix_is_part_of_the_jobs_results(anonymous: httpx.AsyncClient) -> None:
    assert (await post(anonymous, [artifact_event(f"gw/{MINE}")], token())).status_code == 202
    assert refused(await post(anonymous, [artifact_event(MINE)], token())) == [["body", "events", 0, "data", "key"]]
