"""Listing KV keys by filter: exact every time, deletes left out; by a consumer (``kv_entries``) or by
message gets (``kv_scan``: a request per stored entry and one for the end, a consumer past a few)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.subjects import Namespace
from services.common.nats import kv as kv_module
from services.common.nats.kv import SCAN_GETS, KvItem, kv_entries, kv_scan

Listing = Callable[[KeyValue, str], Awaitable[list[KvItem]]]
LISTINGS = pytest.mark.parametrize("listing", [kv_entries, kv_scan], ids=["consumer", "gets"])


@LISTINGS
async def test_every_listing_sees_every_key_written_before_it(
    js: JetStreamContext, namespace: Namespace, listing: Listing
) -> None:
    # nats-py's watch-based listing missed a key about once in 300 runs of this loop.
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("listing")))
    for i in range(150):
        await kv.create(f"t{i}.a", b"1")
        await kv.create(f"t{i}.b", b"2")
        await kv.put(f"other{i}.x", b"3")
        items = await listing(kv, f"t{i}.>")
        assert sorted(item.key for item in items) == [f"t{i}.a", f"t{i}.b"], i


@LISTINGS
async def test_latest_value_only_and_deletes_left_out(
    js: JetStreamContext, namespace: Namespace, listing: Listing
) -> None:
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("latest"), history=5))
    await kv.put("acme.a", b"old")
    revision = await kv.put("acme.a", b"new")
    await kv.put("acme.gone", b"x")
    await kv.delete("acme.gone")
    await kv.put("acme.purged", b"x")
    await kv.purge("acme.purged")
    items = await listing(kv, "acme.>")
    assert [(item.key, item.value, item.revision) for item in items] == [("acme.a", b"new", revision)]
    assert await listing(kv, "nobody.>") == []


async def test_the_consumers_listing_may_leave_the_values_out(js: JetStreamContext, namespace: Namespace) -> None:
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("meta")))
    await kv.put("acme.a", b"value")
    assert [item.value for item in await kv_entries(kv, "acme.>", meta_only=True)] == [b""]


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


async def test_keys_written_during_a_scan_come_once_with_their_newest_value(
    js: JetStreamContext, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("moving_scan")))
    for key in ("t.a", "t.b", "t.c"):
        await kv.put(key, b"old")
    get_msg, gets = js.get_msg, 0

    async def get_then_write(*args: Any, **kwargs: Any) -> Any:
        nonlocal gets
        gets += 1
        if gets == 2:  # t.a was read: it moves on, t.c goes (their old messages are gone)
            await kv.put("t.a", b"new")
            await kv.delete("t.c")
        return await get_msg(*args, **kwargs)

    monkeypatch.setattr(js, "get_msg", get_then_write)
    items = await kv_scan(kv, "t.>")
    assert sorted((item.key, item.value) for item in items) == [("t.a", b"new"), ("t.b", b"old")]


async def test_a_scan_of_a_few_keys_asks_a_get_per_entry_and_one_more(
    nc: NatsClient, js: JetStreamContext, namespace: Namespace
) -> None:
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("scan")))
    asked: Counter[str] = Counter()

    async def count(msg: Msg) -> None:
        asked[msg.subject.split(".")[2] + "." + msg.subject.split(".")[3]] += 1

    await nc.subscribe("$JS.API.>", cb=count)
    assert await kv_scan(kv, "u1.*") == []
    await nc.flush()
    assert asked == {"STREAM.MSG": 1}, "nothing found: one get, no consumer"
    for i in range(SCAN_GETS):
        await kv.put(f"u1.job{i}", b"")
    await kv.put("u2.job0", b"")  # another upload's note: not read
    asked.clear()
    assert len(await kv_scan(kv, "u1.*")) == SCAN_GETS
    await nc.flush()
    assert asked == {"STREAM.MSG": SCAN_GETS + 1}
    await kv.put(f"u1.job{SCAN_GETS}", b"")
    asked.clear()
    assert len(await kv_scan(kv, "u1.*")) == SCAN_GETS + 1  # past the gets' worth: listed by a consumer
    await nc.flush()
    assert asked["CONSUMER.CREATE"] == 1


def test_message_gets_read_headers_as_the_email_parser_did() -> None:
    from email.parser import BytesParser

    raw = b"Nats-Expected-Last-Subject-Sequence: 17\r\nKV-Operation:DEL\r\nX-Two:  a b \r\nbad name: x\r\nnocolon\r\n"
    raw += b"\r\nafter: the blank line\r\n"
    parsed = kv_module.HeaderParser().parsebytes(raw)
    assert dict(parsed.items()) == {
        "Nats-Expected-Last-Subject-Sequence": "17", "KV-Operation": "DEL", "X-Two": "a b",
    }  # fmt: skip
    # as nats-py reads a delivered message's: the value stripped at both ends (email kept a trailing space)
    assert dict(parsed.items()) == {k: v.strip() for k, v in BytesParser().parsebytes(raw).items() if " " not in k}


async def test_a_kv_get_after_an_update_and_a_delete_reads_its_headers(
    js: JetStreamContext, namespace: Namespace
) -> None:
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("headers"), history=5))
    assert isinstance(js._hdr_parser, kv_module.HeaderParser)
    first = await kv.create("acme.a", b"1")
    second = await kv.update("acme.a", b"2", last=first)
    stored = await js.get_msg(kv._stream, second)
    assert stored.headers == {"Nats-Expected-Last-Subject-Sequence": str(first)}
    assert (await kv.get("acme.a")).value == b"2"
    await kv.delete("acme.a")
    with pytest.raises(KeyNotFoundError):
        await kv.get("acme.a")
