"""The fold's pinned consumers, made through the JetStream API's own JSON requests.

nats-py (2.16) has no priority groups, so a fold partition's durable consumer, its one priority group
pinned to one client at a time (``pinned_client``, nats-server 2.11+), is made here with
``CONSUMER.CREATE`` (:class:`PinnedConsumer`), and every API request of the fold goes through
:func:`jetstream_api`, which asks again while NATS is away. Pulling it is
:mod:`~services.dispatcher.fold.pinned.pull`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient

from services.common.nats.connection import is_unavailable

log = logging.getLogger(__name__)
API = "$JS.API"
API_TIMEOUT_S = 5.0
"""How long one JetStream API request waits for its answer."""
API_RETRY_S = 60.0
"""How long a request is sent again while NATS is away (a cluster electing its leaders, a paused server)."""
GROUP = "fold"
NANOS = 1_000_000_000


class PinnedPullError(RuntimeError):
    """The JetStream API refused a request (its code and description)."""


class ConsumerUnavailable(PinnedPullError):
    """A pull had no responder: the consumer is gone (deleted, its stream re-made) or JetStream is
    away; the caller backs off and makes the consumer again."""


@dataclass(frozen=True, slots=True)
class PinnedConsumer:
    """A durable pull consumer (explicit acks) whose one priority group is pinned to one client at a time.

    ``pin_timeout_s`` must exceed ``ack_wait_s``: a client that died holding a batch is unpinned only
    after its messages are due for redelivery, so the next client gets them before anything newer.
    """

    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    ack_wait_s: float
    max_deliver: int
    max_ack_pending: int
    pin_timeout_s: float

    def config(self) -> dict[str, Any]:
        """The consumer's configuration as the JetStream API takes it (where it starts aside)."""
        return {
            "durable_name": self.durable,
            "filter_subjects": list(self.filter_subjects),
            "ack_policy": "explicit",
            "ack_wait": int(self.ack_wait_s * NANOS),
            "max_deliver": self.max_deliver,
            "max_ack_pending": self.max_ack_pending,
            "priority_groups": [GROUP],
            "priority_policy": "pinned_client",
            "priority_timeout": int(self.pin_timeout_s * NANOS),
        }

    async def ensure(self, nc: NatsClient, start_seq: int | None) -> int | None:
        """Create the consumer, or replace one made with another configuration; the first stream
        sequence not acknowledged yet, as its info says (``None``: made now). One made now starts at
        ``start_seq`` (``None``: the stream's first): the stream keeps what was acknowledged, so a
        consumer made anew starts where the fold had got to, not at the stream's first message.
        Another replica may make it meanwhile with its own floor: the server refuses this create (its
        start differs), and the consumer that one made is taken when it matches apart from its start."""
        info = await jetstream_api(nc, f"CONSUMER.INFO.{self.stream}.{self.durable}", None, missing_ok=True)
        if info is not None:
            if (floor := self._floor_if_matching(info)) is not None:
                return floor
            floor = _ack_floor(info)
            log.warning("fold consumer %s changes its configuration: made again from %d", self.durable, floor)
            start_seq = floor if start_seq is None else min(start_seq, floor)
            await jetstream_api(nc, f"CONSUMER.DELETE.{self.stream}.{self.durable}", None, missing_ok=True)
        start = {"deliver_policy": "by_start_sequence", "opt_start_seq": start_seq} if start_seq else {}
        config = {**self.config(), **(start or {"deliver_policy": "all"})}
        try:
            await jetstream_api(
                nc, f"CONSUMER.CREATE.{self.stream}.{self.durable}", {"stream_name": self.stream, "config": config}
            )
        except PinnedPullError:
            info = await jetstream_api(nc, f"CONSUMER.INFO.{self.stream}.{self.durable}", None, missing_ok=True)
            if info is None or (floor := self._floor_if_matching(info)) is None:
                raise
            log.info("fold consumer %s was made by another replica meanwhile", self.durable)
            return floor
        return None

    def _floor_if_matching(self, info: dict[str, Any]) -> int | None:
        """The consumer's first unacknowledged stream sequence, if ``info`` shows it configured as
        wanted (where it starts aside); ``None`` if not."""
        have = info.get("config", {})
        have["filter_subjects"] = have.get("filter_subjects") or [have.get("filter_subject")]
        return _ack_floor(info) if all(have.get(key) == value for key, value in self.config().items()) else None


def _ack_floor(info: dict[str, Any]) -> int:
    """The first stream sequence a consumer's info shows not acknowledged."""
    return int((info.get("ack_floor") or {}).get("stream_seq") or 0) + 1


async def jetstream_api(nc: NatsClient, verb: str, body: dict[str, Any] | None, missing_ok: bool = False) -> Any:
    """One JetStream API request, sent again while NATS is away (each verb here may be: INFO reads,
    CREATE with the same configuration answers the consumer, DELETE of a deleted one is missing_ok)."""
    deadline = asyncio.get_running_loop().time() + API_RETRY_S
    while True:
        try:
            reply = await nc.request(f"{API}.{verb}", json.dumps(body).encode() if body else b"", timeout=API_TIMEOUT_S)
            break
        except Exception as exc:
            if not is_unavailable(exc) or asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("JetStream did not answer %s; asking again", verb)
    answer = json.loads(reply.data or b"{}")
    if error := answer.get("error"):
        if missing_ok and error.get("code") == 404:
            return None
        raise PinnedPullError(f"{verb}: {error.get('code')} {error.get('description')}")
    return answer
