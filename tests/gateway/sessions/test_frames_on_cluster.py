"""Frames on a gateway whose nats-server is a 3-node cluster (streams with 3 replicas, as deployed): a
keyed frame sent again after its session stopped (its first answer lost) answers the seq it was stored as.

A server without a cluster checks a publish's fence before its message id, so there such a retry is a
409 (see :func:`~services.gateway.sessions.frame_keys.stored_seq`)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator

import httpx
import pytest

from services.common.nats.cluster import NatsCluster, wait_jetstream
from services.common.nats.embedded import EmbeddedNats
from tests.support.gateway import Gateway, Tenant
from tests.support.sessions import jpeg, post_frame

DOCUMENTED = "?ts=1700000000.5"  # a query: the request goes to the FastAPI route, not PlainFrameRoute


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """This module's nats-server: the first node of a cluster of three (each test connects to it)."""
    cluster = NatsCluster(tmp_path_factory.mktemp("cluster"), sync_interval="2m").start()  # no power is cut here
    try:
        asyncio.run(wait_jetstream(cluster.url, 30))
        yield cluster.nodes[0]
    finally:
        cluster.stop()


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    return {"nats_replicas": 3, "session_max_frames_per_s": 1000.0}


async def test_a_stored_frame_sent_again_after_the_session_stopped_still_answers_its_seq(
    gateway: Gateway, acme: Tenant
) -> None:
    sid = (await acme.http.post("/v1/sessions", json={"kind": "splat"})).json()["id"]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        post = functools.partial(post_frame, http, acme.key, sid)
        for n in (1, 2):
            sent = await post(jpeg(n), f"cam-{n}")
            assert (sent.status_code, sent.json()["seq"]) == (202, n), sent.text
        stopped = await acme.http.post(f"/v1/sessions/{sid}/stop")
        assert stopped.status_code == 202, stopped.text
        for query in ("", DOCUMENTED):
            for n in (1, 2):  # the answer of a try that was lost: the frame is stored, its seq kept
                again = await post(jpeg(n), f"cam-{n}", query)
                assert again.status_code == 202, again.text
                assert again.json()["seq"] == n
            reused = await post(jpeg(3), "cam-1", query)
            assert reused.status_code == 422, reused.text
            for key in ("cam-3", None):  # a frame never stored: the session takes no more
                late = await post(jpeg(3), key, query)
                assert late.status_code == 409, late.text
                assert late.headers["content-type"] == "application/problem+json"
    received = (await acme.http.get(f"/v1/sessions/{sid}")).json()["frames_received"]
    assert received == 2
