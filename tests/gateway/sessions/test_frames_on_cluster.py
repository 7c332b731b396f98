"""Frames on a gateway whose nats-server is a 3-node cluster (streams with 3 replicas, as deployed): a
keyed frame sent again after its session stopped (its first answer lost) answers the seq it was stored as.

A replicated stream checks the fence this retry is sent with after its message id, where a single
server checks another (:func:`~services.gateway.sessions.frame_keys.stored_seq`); test_frames_after_stop.py
holds the same on one server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from services.common.nats.server.cluster import NatsCluster, wait_jetstream
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.gateway import Gateway, Tenant
from tests.support.sessions import keyed_frames_answered_after_stop


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
    await keyed_frames_answered_after_stop(gateway.url, acme.http, acme.key)
