"""Worker event ingest over real HTTP and NATS: job-scoped tokens, allowed types, dedup by event id."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from pydantic import BaseModel

from bench.harness.secrets import INGEST_SECRET
from contracts.envelope import EventEnvelope
from contracts.event_ids import worker_event_id
from contracts.events.jobs import (
    JobHeartbeatPayload,
    JobLogPayload,
    JobProgressPayload,
    JobQueuedPayload,
    JobRetryingPayload,
    JobStartedPayload,
    JobSucceededPayload,
)
from contracts.events.registry import EventType, make_event
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.common.auth.ingest_tokens import mint_ingest_token

JOB = "job_0001"


def token(job: str = JOB, attempt: int = 1, tenant: str = "acme", **kwargs: Any) -> str:
    return mint_ingest_token(INGEST_SECRET.encode(), tenant, job, attempt, ttl_s=60, **kwargs)


def event(
    type_: EventType = EventType.JOB_PROGRESS,
    payload: BaseModel | None = None,
    *,
    job: str = JOB,
    attempt: int = 1,
    tenant: str = "acme",
) -> EventEnvelope:
    payload = payload or JobProgressPayload(fraction=0.5, stage="inference")
    return make_event(
        type_, payload, tenant=tenant, source="worker/pose", job_id=job, kind="pose", attempt=attempt,
        event_id=worker_event_id(job, attempt),
    )  # fmt: skip


async def post(http: httpx.AsyncClient, body: Any, bearer: str | None = None, job: str = JOB) -> httpx.Response:
    if isinstance(body, EventEnvelope):
        body = body.model_dump(mode="json", exclude_none=True)
    elif isinstance(body, list):
        body = {"events": [e.model_dump(mode="json", exclude_none=True) for e in body]}
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return await http.post(f"/v1/internal/jobs/{job}/events", json=body, headers=headers)


async def stored_count(js: JetStreamContext, namespace: Namespace) -> int:
    return (await js.stream_info(namespace.stream(JOBS))).state.messages


async def test_a_progress_event_lands_on_its_subject_with_its_id(
    anonymous: httpx.AsyncClient, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    progress = event()
    response = await post(anonymous, progress, token())
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0}
    msg = await js.get_last_msg(namespace.stream(JOBS), subjects.stored_job_event("acme", JOB, "progress"))
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == progress.id
    assert msg.data is not None
    assert EventEnvelope.from_json_bytes(msg.data) == progress


async def test_a_resent_event_is_stored_once(
    anonymous: httpx.AsyncClient, js: JetStreamContext, namespace: Namespace
) -> None:
    progress = event()
    assert (await post(anonymous, progress, token())).json() == {"accepted": 1, "duplicates": 0}
    assert (await post(anonymous, [progress], token())).json() == {"accepted": 1, "duplicates": 1}
    assert await stored_count(js, namespace) == 1


async def test_a_batch_is_published_in_order(
    anonymous: httpx.AsyncClient, js: JetStreamContext, namespace: Namespace
) -> None:
    batch = [
        event(EventType.JOB_STARTED, JobStartedPayload(worker="local-1", gpu="T4")),
        *[event(payload=JobProgressPayload(fraction=i / 10)) for i in range(5)],
        event(EventType.JOB_LOG, JobLogPayload(message="hello")),
        event(EventType.JOB_HEARTBEAT, JobHeartbeatPayload(worker="local-1")),
        event(EventType.JOB_SUCCEEDED, JobSucceededPayload(result={"frames": 3})),
    ]
    response = await post(anonymous, batch, token())
    assert response.json() == {"accepted": len(batch), "duplicates": 0}
    stream = namespace.stream(JOBS)
    ids = [EventEnvelope.from_json_bytes((await js.get_msg(stream, seq)).data or b"").id for seq in range(1, 10)]
    assert ids == [e.id for e in batch]


async def test_a_token_for_another_job_is_forbidden(anonymous: httpx.AsyncClient) -> None:
    response = await post(anonymous, event(job="job_B"), token(job="job_A"), job="job_B")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("event_scope", "token_scope"),
    [({"attempt": 1}, {"attempt": 2}), ({"job": "job_other"}, {}), ({"tenant": "globex"}, {})],
    ids=["attempt", "job", "tenant"],
)
async def test_events_outside_the_tokens_scope_are_forbidden(
    anonymous: httpx.AsyncClient,
    js: JetStreamContext,
    namespace: Namespace,
    event_scope: dict[str, Any],
    token_scope: dict[str, Any],
) -> None:
    valid = event(attempt=token_scope.get("attempt", 1))
    response = await post(anonymous, [valid, event(**event_scope)], token(**token_scope))
    assert response.status_code == 403, response.text
    assert response.json()["errors"][0]["loc"][:3] == ["body", "events", 1]
    assert await stored_count(js, namespace) == 0


async def test_token_problems_are_401(anonymous: httpx.AsyncClient) -> None:
    expired = token(now=time.time() - 120)
    forged = mint_ingest_token(b"another-secret", "acme", JOB, 1, ttl_s=60)
    for bearer in (None, expired, forged, "gr_0123456789abcdef_notatoken", "v1.x.y"):
        response = await post(anonymous, event(), bearer)
        assert response.status_code == 401, (bearer, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
    assert "expired" in (await post(anonymous, event(), expired)).json()["detail"]


@pytest.mark.parametrize(
    ("type_", "payload"),
    [
        (EventType.JOB_QUEUED, JobQueuedPayload()),
        (EventType.JOB_RETRYING, JobRetryingPayload(reason="oom", next_attempt=2)),
    ],
)
async def test_lifecycle_types_are_not_for_workers(
    anonymous: httpx.AsyncClient,
    js: JetStreamContext,
    namespace: Namespace,
    type_: EventType,
    payload: BaseModel,
) -> None:
    response = await post(anonymous, [event(), event(type_, payload)], token())
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "events", 1, "type"]
    assert await stored_count(js, namespace) == 0


async def test_invalid_payloads_name_the_field(anonymous: httpx.AsyncClient) -> None:
    body = event().model_dump(mode="json") | {"data": {"fraction": 1.5}}
    response = await anonymous.post(
        f"/v1/internal/jobs/{JOB}/events", json=body, headers={"Authorization": f"Bearer {token()}"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "data", "fraction"]
    unknown = event().model_dump(mode="json") | {"type": "job.teleported"}
    assert (await post(anonymous, unknown, token())).status_code == 422
    assert (await post(anonymous, {"events": []}, token())).status_code == 422


@pytest.mark.parametrize("gateway_overrides", [{"ingest_max_events": 2}])
async def test_the_batch_size_is_bounded(anonymous: httpx.AsyncClient) -> None:
    response = await post(anonymous, [event(), event(), event()], token())
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "events"]
