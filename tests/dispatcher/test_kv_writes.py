"""Reading what KV stored since a point: every write after it, in order, and on an idle bucket one
message get and no consumer (a sweep every 15 s of an idle stack made one, issue 34's rest budget)."""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig

from contracts.subjects import Namespace
from services.dispatcher.kv_writes import read_writes


async def test_writes_after_a_point_are_read_in_order_and_an_idle_bucket_makes_no_consumer(
    js: JetStreamContext, namespace: Namespace
) -> None:
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("writes"), history=5))
    stream = f"KV_{namespace.bucket('writes')}"
    seen: list[str] = []

    def on_write(key: str, msg: Msg) -> None:
        seen.append(key)

    assert await read_writes(kv, 0, on_write) == (0, 0)  # an empty bucket
    assert (await js.stream_info(stream)).state.consumer_count == 0
    await kv.put("a", b"1")
    await kv.put("b", b"1")
    last, read = await read_writes(kv, 0, on_write)
    assert (last, read, seen) == (2, 2, ["a", "b"])
    made = (await js.stream_info(stream)).state.consumer_count

    assert await read_writes(kv, last, on_write) == (last, 0)  # nothing since
    assert (await js.stream_info(stream)).state.consumer_count == made, "an idle read made a consumer"

    await kv.put("b", b"2")
    await kv.delete("a")
    assert await read_writes(kv, last, on_write) == (4, 2)
    assert seen == ["a", "b", "b", "a"]
