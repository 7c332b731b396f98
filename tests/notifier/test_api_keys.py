"""The notifier verifies API keys through the shared key cache: one KV read per key, revocations at once."""

from __future__ import annotations

import httpx

from bench.harness.waiting import wait_for
from services.common.auth.apikeys import ApiKeyStore
from tests.support.notifier import Notifier


async def test_a_cached_key_is_read_from_kv_once_and_a_revoked_one_stops_working(
    notifier: Notifier, http: httpx.AsyncClient, keys: ApiKeyStore
) -> None:
    record, key = await keys.create("acme")
    headers = {"Authorization": f"Bearer {key}"}
    cache = notifier.app.state.notifier.key_cache
    url = "/v1/webhooks/whk_none/deliveries"  # a valid key gets 404 (no such endpoint), an invalid one 401

    async def served_from_cache() -> bool:  # the watcher may see the key's creation after a first read
        reads = cache.kv_reads
        assert (await http.get(url, headers=headers)).status_code == 404
        return cache.kv_reads == reads

    await wait_for(served_from_cache, what="the key cached")
    reads = cache.kv_reads
    for _ in range(3):
        assert (await http.get(url, headers=headers)).status_code == 404
    assert cache.kv_reads == reads
    assert await keys.revoke(record.key_id)

    async def refused() -> bool:
        response = await http.get(url, headers=headers)
        return response.status_code == 401

    await wait_for(refused, what="the revoked key refused")
    assert (await http.get("/v1/events", headers=headers)).status_code == 401
