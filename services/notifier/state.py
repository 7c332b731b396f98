"""Everything the notifier's routes and webhook machinery share, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from services.common.auth.apikeys import ApiKeyStore
from services.common.auth.key_cache import KeyCache
from services.common.http.nats_failover import StuckServerWatch
from services.common.nats.declarations import declare_all
from services.common.nats.kv import bind_bucket
from services.common.nats.publish import placement_pending, until_answered
from services.notifier.settings import NotifierSettings
from services.notifier.sse.hub import Hub
from services.notifier.sse.slots import StreamSlots, stream_slots
from services.notifier.webhooks.deliveries import DeliveryStore, open_bucket
from services.notifier.webhooks.delivery_loops import DeliveryLoops
from services.notifier.webhooks.http1 import MAX_IDLE_PER_ORIGIN
from services.notifier.webhooks.leases import Leases, open_leases
from services.notifier.webhooks.sender import Sender
from services.notifier.webhooks.targets import EndpointCache


@dataclass
class NotifierState:
    """Everything the routes and the webhook machinery share in one notifier process."""

    settings: NotifierSettings
    nc: NatsClient
    js: JetStreamContext
    key_cache: KeyCache
    jobs: KeyValue
    sessions: KeyValue
    webhooks: KeyValue
    deliveries: DeliveryStore
    endpoints: EndpointCache
    delivery: DeliveryLoops
    sender: Sender
    streams: StreamSlots
    leases: Leases
    """Who runs the fan-out and each delivery queue among the replicas."""
    nats_watch: StuckServerWatch
    """Moves ``nc`` off a server cut off from its cluster: told by the SSE feeds, the taps' catch-ups,
    the fan-out and the 503 handler each time NATS failed them."""
    hub: Hub | None = None
    """The shared live SSE subscription (``sse_fanout="shared"``); started by the lifespan."""

    @property
    def signing_secret(self) -> bytes:
        """The secret stream tokens are signed with."""
        return self.settings.signing_secret.get_secret_value().encode()


async def open_state(settings: NotifierSettings, nc: NatsClient) -> NotifierState:
    """Bind buckets and build the webhook components (nothing started yet)."""
    js = nc.jetstream()
    ns = settings.ns
    await declare_all(js, settings)

    async def bucket(name: str) -> KeyValue:
        return await bind_bucket(js, ns.bucket(name))

    webhooks = await bucket(streams.KV_WEBHOOKS)
    # both bind their bucket, or make it on first use: made again as a whole while JetStream is away
    # (or a forming cluster cannot place it yet)
    s = settings
    leases = await until_answered(
        lambda: open_leases(js, ns, s.webhook_lease_ttl_s, s.nats_replicas),
        "open leases",
        also_retried=placement_pending,
    )
    deliveries = await until_answered(
        lambda: open_bucket(js, ns, s.webhook_deliveries_ttl_s, s.nats_replicas),
        "open the deliveries bucket",
        also_retried=placement_pending,
    )
    store = DeliveryStore(deliveries)
    endpoints = EndpointCache(webhooks, js, ns.bucket(streams.KV_WEBHOOKS))
    watch = StuckServerWatch(nc, ns.stream(streams.JOBS))
    sender = Sender(
        settings.webhook_allow_hosts,
        allow_http=settings.webhook_allow_http,
        timeout_s=settings.webhook_timeout_s,
        pool_idle_s=settings.webhook_pool_idle_s,
        pool_max_idle=settings.webhook_pool_max_idle,
        pool_per_origin=max(MAX_IDLE_PER_ORIGIN, settings.webhook_endpoint_concurrency),  # one per attempt in flight
    )
    return NotifierState(
        settings=settings,
        nc=nc,
        js=js,
        key_cache=KeyCache(
            ApiKeyStore(await bucket(streams.KV_APIKEYS)),
            settings.api_key_cache_s,
            settings.api_key_cache_max_entries,
            token_secret=settings.signing_secret.get_secret_value().encode(),
        ),
        jobs=await bucket(streams.KV_JOBS),
        sessions=await bucket(streams.KV_SESSIONS),
        webhooks=webhooks,
        deliveries=store,
        endpoints=endpoints,
        delivery=DeliveryLoops(settings, js, endpoints, store, sender, leases),
        sender=sender,
        streams=stream_slots(settings.sse_max_streams_per_tenant, settings.sse_retry_ms),
        leases=leases,
        nats_watch=watch,
        hub=_hub(settings, nc, js, watch) if settings.sse_fanout == "shared" else None,
    )


def _hub(settings: NotifierSettings, nc: NatsClient, js: JetStreamContext, watch: StuckServerWatch) -> Hub:
    ns = settings.ns
    prefix = ns.subject("")
    return Hub(
        nc,
        js,
        ns.stream(streams.JOBS),
        prefix,
        settings.sse_hub_buffer,
        settings.sse_pull_heartbeat_s,
        settings.sse_catch_up_batch,
        watch.failed,
    )
