"""Frames on a gateway with one nats-server (``gpurelay dev``'s, streams with one replica): a keyed frame
sent again after its session stopped (its first answer lost) answers the seq it was stored as.

One server checks a publish's last subject sequence before its message id, so this retry is fenced
there by a last message id instead (:func:`~services.gateway.sessions.frame_keys.stored_seq`); before,
it was a 409 like any frame after the end. test_frames_on_cluster.py holds the same on a cluster."""

from __future__ import annotations

import pytest

from tests.support.gateway import Gateway, Tenant
from tests.support.sessions import keyed_frames_answered_after_stop


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    return {"session_max_frames_per_s": 1000.0}


async def test_a_stored_frame_sent_again_after_the_session_stopped_answers_its_seq_on_one_server(
    gateway: Gateway, acme: Tenant
) -> None:
    await keyed_frames_answered_after_stop(gateway.url, acme.http, acme.key)
