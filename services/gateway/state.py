"""Everything a gateway request needs, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.kv import KeyValue

from contracts import streams
from contracts.envelope import EventEnvelope
from contracts.subjects import Subjects
from services.common.apikeys import ApiKeyStore
from services.common.config import GatewaySettings
from services.common.storage import Storage


@dataclass(frozen=True)
class Buckets:
    """The KV buckets the gateway reads or writes."""

    jobs: KeyValue
    idempotency: KeyValue
    apikeys: KeyValue
    webhooks: KeyValue
    sessions: KeyValue
    robots: KeyValue
    uploads: KeyValue


@dataclass
class GatewayState:
    """Settings, NATS, KV buckets, storage and API keys of one gateway process."""

    settings: GatewaySettings
    nc: NatsClient
    js: JetStreamContext
    kv: Buckets
    storage: Storage
    keys: ApiKeyStore

    @property
    def subjects(self) -> Subjects:
        """Subject builders of this deployment's namespace."""
        return self.settings.subjects

    @classmethod
    async def open(cls, settings: GatewaySettings, nc: NatsClient, storage: Storage) -> GatewayState:
        """Bind the declared buckets (the caller has applied the declarations)."""
        js = nc.jetstream()
        ns = settings.ns

        async def bucket(name: str) -> KeyValue:
            return await js.key_value(ns.bucket(name))

        kv = Buckets(
            jobs=await bucket(streams.KV_JOBS),
            idempotency=await bucket(streams.KV_IDEMPOTENCY),
            apikeys=await bucket(streams.KV_APIKEYS),
            webhooks=await bucket(streams.KV_WEBHOOKS),
            sessions=await bucket(streams.KV_SESSIONS),
            robots=await bucket(streams.KV_ROBOTS),
            uploads=await bucket(streams.KV_UPLOADS),
        )
        return cls(settings=settings, nc=nc, js=js, kv=kv, storage=storage, keys=ApiKeyStore(kv.apikeys))

    async def publish_event(self, subject: str, event: EventEnvelope) -> PubAck:
        """Publish ``event`` to JetStream, deduplicated by its id (``Nats-Msg-Id``)."""
        return await self.js.publish(subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.id})
