"""Listing KV keys by filter: exact every time, deletes left out."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig

from contracts.subjects import Namespace
from services.common.nats import kv as kv_module
from services.common.nats.kv import kv_entries


async def test_every_listing_sees_every_key_written_before_it(js: JetStreamContext, namespace: Namespace) -> None:
    # nats-py's watch-based listing missed a key about once in 300 runs of this loop.
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("listing")))
    for i in range(150):
        await kv.create(f"t{i}.a", b"1")
        await kv.create(f"t{i}.b", b"2")
        await kv.put(f"other{i}.x", b"3")
        items = await kv_entries(kv, f"t{i}.>")
        assert sorted(item.key for item in items) == [f"t{i}.a", f"t{i}.b"], i


async def test_latest_value_only_and_deletes_left_out(js: JetStreamContext, namespace: Namespace) -> None:
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("latest"), history=5))
    await kv.put("acme.a", b"old")
    revision = await kv.put("acme.a", b"new")
    await kv.put("acme.gone", b"x")
    await kv.delete("acme.gone")
    await kv.put("acme.purged", b"x")
    await kv.purge("acme.purged")
    items = await kv_entries(kv, "acme.>")
    assert [(item.key, item.value, item.revision) for item in items] == [("acme.a", b"new", revision)]
    assert [item.value for item in await kv_entries(kv, "acme.>", meta_only=True)] == [b""]
    assert await kv_entries(kv, "nobody.>") == []


async def test_keys_written_during_a_listing_come_once_with_their_newest_value(
    js: JetStreamContext, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("moving")))
    for key in ("t.a", "t.b", "t.c", "t.d"):
        await kv.put(key, b"old")
    monkeypatch.setattr(kv_module, "FETCH_BATCH", 1)
    subscribe, fetches = js.pull_subscribe, 0

    async def writes_after_the_first_fetch(*args: Any, **kwargs: Any) -> Any:
        sub = await subscribe(*args, **kwargs)
        fetch = sub.fetch

        async def fetch_then_write(*fargs: Any, **fkwargs: Any) -> Any:
            nonlocal fetches
            fetches += 1
            if fetches == 2:  # t.a was read: it and t.c move on, t.d goes (their old messages are gone)
                await kv.put("t.a", b"new")
                await kv.put("t.c", b"new")
                await kv.delete("t.d")
            return await fetch(*fargs, **fkwargs)

        sub.fetch = fetch_then_write
        return sub

    monkeypatch.setattr(js, "pull_subscribe", writes_after_the_first_fetch)
    items = await kv_entries(kv, "t.>")
    assert sorted((item.key, item.value) for item in items) == [("t.a", b"new"), ("t.b", b"old"), ("t.c", b"new")]
