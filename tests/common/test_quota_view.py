"""Tenant quotas from a watched view of KV ``quotas``: a job's checks read nothing, a change applies as
the watch brings it (issue 34: two message gets a job before), and reads come back where the view cannot
answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import cast

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import ValidationError

from contracts import streams
from contracts.quotas import TenantQuota
from contracts.streams import Declarations
from contracts.subjects import Namespace
from services.common.quotas import QuotaBook

DEFAULTS = TenantQuota(max_queued=100)


@pytest.fixture
async def buckets(js: JetStreamContext, namespace: Namespace, declared: Declarations) -> tuple[KeyValue, KeyValue]:
    return (
        await js.key_value(namespace.bucket(streams.KV_QUOTAS)),
        await js.key_value(namespace.bucket(streams.KV_TENANT_USAGE)),
    )


@pytest.fixture
async def book(buckets: tuple[KeyValue, KeyValue]) -> AsyncIterator[QuotaBook]:
    started = QuotaBook(*buckets, DEFAULTS, ttl_s=1.0)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
def caught_up(book: QuotaBook, js: JetStreamContext, namespace: Namespace) -> Callable[[], Awaitable[None]]:
    """Wait until the book's view has every quota written so far."""
    return lambda: book.caught_up(js, namespace.bucket(streams.KV_QUOTAS))


async def test_a_quota_set_elsewhere_applies_without_a_read(
    book: QuotaBook, buckets: tuple[KeyValue, KeyValue], caught_up: Callable[[], Awaitable[None]]
) -> None:
    assert book.viewing
    assert await book.quota("acme") == DEFAULTS
    other = QuotaBook(*buckets, DEFAULTS, ttl_s=1.0)  # another replica's book (the operator's API)
    await other.set("acme", TenantQuota(max_queued=3))
    await caught_up()
    assert (await book.quota("acme")).max_queued == 3
    await buckets[0].delete("acme")
    await caught_up()
    assert await book.quota("acme") == DEFAULTS
    assert book.reads == 0


async def test_its_own_set_applies_at_once(book: QuotaBook) -> None:
    await book.set("acme", TenantQuota(max_queued=7))
    assert (await book.quota("acme")).max_queued == 7
    assert book.reads == 0


async def test_an_unreadable_quota_is_read_and_refused_as_before(
    book: QuotaBook, buckets: tuple[KeyValue, KeyValue], caught_up: Callable[[], Awaitable[None]]
) -> None:
    await buckets[0].put("acme", b"{not json")
    await caught_up()
    with pytest.raises(ValidationError):
        await book.quota("acme")
    assert book.reads == 1
    assert await book.quota("globex") == DEFAULTS


async def test_without_a_cache_every_check_reads(buckets: tuple[KeyValue, KeyValue]) -> None:
    uncached = QuotaBook(*buckets, DEFAULTS, ttl_s=0.0)
    await uncached.start()
    assert not uncached.viewing
    await buckets[0].put("acme", TenantQuota(max_queued=2).model_dump_json().encode())
    assert (await uncached.quota("acme")).max_queued == 2
    assert (await uncached.quota("acme")).max_queued == 2
    assert uncached.reads == 2
    await uncached.stop()


async def test_usage_is_added_on_the_last_write_without_a_read_and_reread_after_another_writer(
    buckets: tuple[KeyValue, KeyValue],
) -> None:
    """A tally adds to the usage this book wrote last (no message get: issue 34); another replica's write
    in between fails the compare-and-set, and the book reads and adds again, losing nothing."""
    mine, theirs = QuotaBook(*buckets, DEFAULTS, ttl_s=0), QuotaBook(*buckets, DEFAULTS, ttl_s=0)
    reads: list[str] = []
    usage_get = buckets[1].get

    async def counted_get(key: str, *args: object, **kwargs: object) -> object:
        reads.append(key)
        return await usage_get(key, *args, **kwargs)  # type: ignore[arg-type]

    usage = buckets[1]  # its writes as they are (kv_write publishes on the bucket's own subjects)
    mine.usage = cast(KeyValue, SimpleNamespace(get=counted_get, create=usage.create, _js=usage._js, _pre=usage._pre))
    await mine.add_gpu_seconds("acme", 1.5)
    await mine.add_gpu_seconds("acme", 2.0)
    assert len(reads) == 1  # the first add read (nothing there yet); the second added on its own write
    await theirs.add_gpu_seconds("acme", 4.0)
    await mine.add_gpu_seconds("acme", 0.25)
    assert len(reads) == 2  # its write failed on theirs: read, added again
    assert await theirs.gpu_seconds_today("acme") == 7.75
