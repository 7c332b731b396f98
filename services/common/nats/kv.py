"""Listing a KV bucket's keys by filter, exactly.

nats-py lists keys (``kv.keys()``, ``kv.watch(...)`` until its ``None`` marker) with an ordered push
consumer whose "initial values done" marker comes from each message's ``num_pending``, and that
listing ends early now and then (a key written before the listing began is missed). Here a pull
consumer is created with ``LAST_PER_SUBJECT`` and read until the server says nothing is pending (each
fetched message's ``num_pending``). A key written during the listing comes again with its new value
(its old message may be gone by then: a bucket keeps one per key), so the newest value of each key is
kept and a key deleted meanwhile is left out: the listing is the bucket as it was at its end.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

MARKER_REASON = "Nats-Marker-Reason"
"""Set on the server's own delete/expiry markers (nats-server 2.11+)."""
FETCH_BATCH = 256
FETCH_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class KvItem:
    """The latest value of one key."""

    key: str
    value: bytes
    revision: int


async def kv_entries(kv: KeyValue, key_filter: str = ">", *, meta_only: bool = False) -> list[KvItem]:
    """The latest entry of every live key matching ``key_filter`` (deleted keys left out)."""
    # nats-py keeps a bucket's JetStream context, stream name and subject prefix private.
    js, stream, prefix = kv._js, kv._stream, kv._pre
    sub = await js.pull_subscribe(
        f"{prefix}{key_filter}",
        stream=stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=AckPolicy.NONE,
            headers_only=meta_only or None,
            inactive_threshold=30.0,
            mem_storage=True,
        ),
    )
    latest: dict[str, KvItem | None] = {}
    try:
        remaining = (await sub.consumer_info()).num_pending or 0
        while remaining > 0:
            for msg in await sub.fetch(min(remaining, FETCH_BATCH), timeout=FETCH_TIMEOUT_S):
                remaining = msg.metadata.num_pending
                headers, key = msg.headers or {}, msg.subject[len(prefix) :]
                gone = headers.get(KV_OP) in (KV_DEL, KV_PURGE) or headers.get(MARKER_REASON)
                latest[key] = None if gone else KvItem(key, msg.data, msg.metadata.sequence.stream)
    finally:
        await sub.unsubscribe()
    return [item for item in latest.values() if item is not None]
