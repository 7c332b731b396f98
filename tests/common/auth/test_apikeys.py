"""API keys in a real KV bucket: only hashes stored, revocation, adoption."""

from __future__ import annotations

from nats.js import JetStreamContext

from contracts.streams import KV_APIKEYS, Declarations
from contracts.subjects import Namespace
from services.common.auth.apikeys import ApiKeyStore, generate_key


async def _store(js: JetStreamContext, namespace: Namespace) -> ApiKeyStore:
    return ApiKeyStore(await js.key_value(namespace.bucket(KV_APIKEYS)))


async def test_create_verify_revoke(js: JetStreamContext, declared: Declarations, namespace: Namespace) -> None:
    store = await _store(js, namespace)
    record, key = await store.create("acme", name="ci")
    principal = await store.verify(key)
    assert principal is not None
    assert (principal.tenant, principal.key_id) == ("acme", record.key_id)
    raw = (await store.kv.get(record.key_id)).value or b""
    assert key.encode() not in raw, "the plaintext key must never be stored"
    assert key.split("_")[-1].encode() not in raw
    assert await store.revoke(record.key_id) is True
    assert await store.verify(key) is None
    assert await store.revoke("0123456789abcdef") is False


async def test_wrong_secret_and_garbage_are_refused(
    js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    store = await _store(js, namespace)
    _, key = await store.create("acme")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for candidate in (forged, "", "gr_", "Bearer " + key, key + "x", key.replace("gr_", "gx_")):
        assert await store.verify(candidate) is None, candidate


async def test_adopt_is_idempotent_and_list_filters(
    js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    store = await _store(js, namespace)
    key = generate_key()
    first = await store.adopt("dev", key)
    second = await store.adopt("dev", key)
    assert first == second
    await store.create("other")
    assert [r.tenant for r in await store.list("dev")] == ["dev"]
    assert sorted(r.tenant for r in await store.list()) == ["dev", "other"]
