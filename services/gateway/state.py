"""Everything a gateway request needs, built once in the app's lifespan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from contracts import streams
from contracts.api.uploads import UploadRecord
from contracts.envelope import EventEnvelope
from contracts.subjects import Subjects, stored_subject
from services.common.auth.apikeys import ApiKeyStore
from services.common.auth.key_cache import KeyCache
from services.common.http.problem import ProblemError
from services.common.nats.kv import bind_bucket
from services.common.nats.publish import publish_event
from services.common.storage import Storage
from services.gateway.jobs.admission import Admission
from services.gateway.sessions.lru import Lru
from services.gateway.settings import GatewaySettings


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
    key_cache: KeyCache
    admission: Admission | None = None
    """Quota checks at submit (:mod:`services.gateway.jobs.admission`)."""
    ingest_js: JetStreamContext | None = None
    """Where the ingest route publishes workers' events: a connection as the worker role's user
    (``ingest_nats_user``); ``None``: :attr:`js`."""
    completed_uploads: Lru[UploadRecord] = field(default_factory=lambda: Lru(10_000))
    """Completed uploads' records by tenant key (:mod:`services.gateway.uploads.inputs`)."""
    pending_uploads: Lru[tuple[UploadRecord, int]] = field(default_factory=lambda: Lru(10_000))
    """Pending uploads' records and revisions this gateway wrote, by tenant key, for their complete
    (:mod:`services.gateway.uploads.routes`)."""

    @property
    def subjects(self) -> Subjects:
        """Subject builders of this deployment's namespace."""
        return self.settings.subjects

    @classmethod
    async def open(
        cls, settings: GatewaySettings, nc: NatsClient, storage: Storage, ingest_nc: NatsClient | None = None
    ) -> GatewayState:
        """Bind the declared buckets (the caller has applied the declarations); ``ingest_nc``: the ingest
        route's own connection."""
        js = nc.jetstream()
        ns = settings.ns

        async def bucket(name: str) -> KeyValue:
            return await bind_bucket(js, ns.bucket(name))

        kv = Buckets(
            jobs=await bucket(streams.KV_JOBS),
            idempotency=await bucket(streams.KV_IDEMPOTENCY),
            apikeys=await bucket(streams.KV_APIKEYS),
            webhooks=await bucket(streams.KV_WEBHOOKS),
            sessions=await bucket(streams.KV_SESSIONS),
            robots=await bucket(streams.KV_ROBOTS),
            uploads=await bucket(streams.KV_UPLOADS),
        )
        keys = ApiKeyStore(kv.apikeys)
        return cls(
            settings=settings,
            nc=nc,
            js=js,
            kv=kv,
            storage=storage,
            keys=keys,
            key_cache=KeyCache(
                keys,
                settings.api_key_cache_s,
                settings.api_key_cache_max_entries,
                token_secret=settings.signing_secret.get_secret_value().encode(),
            ),
            admission=await Admission.open(js, ns, settings.quota_defaults, settings.quota_cache_s),
            ingest_js=ingest_nc.jetstream() if ingest_nc is not None else None,
            completed_uploads=Lru(settings.upload_cache_max),
            pending_uploads=Lru(settings.upload_cache_max),
        )

    async def publish_event(
        self, subject: str, event: EventEnvelope, headers: Mapping[str, str] | None = None
    ) -> PubAck:
        """Publish ``event`` (with ``headers``) to JetStream, deduplicated by its id (``Nats-Msg-Id``)."""
        return await publish_event(self.js, subject, event, headers=headers)

    async def publish_once(
        self, subject: str, event: EventEnvelope, *, check: bool = True, headers: Mapping[str, str] | None = None
    ) -> None:
        """Publish ``event`` (with ``headers``) unless JOBS already holds a message of ``subject`` (with
        ``check``; a job event's read as JOBS stores it, with its slot token); 503 on failure.

        ``Nats-Msg-Id`` dedups repeats within the stream's window; the check covers any later repeat
        (a retried request after a crash between the KV write and the publish).
        """
        try:
            if check:
                try:
                    stored = stored_subject(self.settings.ns, subject)
                    await self.js.get_last_msg(self.settings.ns.stream(streams.JOBS), stored)
                    return
                except NotFoundError:
                    pass
            await self.publish_event(subject, event, headers)
        except (nats.errors.Error, TimeoutError) as exc:
            raise ProblemError(
                503,
                f"The event could not be recorded ({type(exc).__name__}); retry.",
                headers={"Retry-After": "1"},
            ) from exc
