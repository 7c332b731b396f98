"""Where webhook deliveries go: the KV endpoints of each tenant and the per-job webhook of a spec.

:class:`EndpointCache` mirrors KV ``webhooks`` in memory through a watcher (:class:`KvWatch`), and can wait until it
has seen every write made so far (:meth:`EndpointCache.caught_up`), so an endpoint created before
an event is published never misses that event.

A per-job webhook (``spec.webhook``) has no KV record. Its endpoint id is ``jobhook-{job_id}``
(:func:`job_hook_id`); its deliveries go to the tenant's shared job-hook queue
(:data:`JOB_HOOKS_QUEUE`, the per-job endpoint id in a header), and it is signed with a per-tenant
secret derived from the deployment's ``signing_secret`` (:func:`job_webhook_secret`): ``whsec_`` +
base64(HMAC-SHA256(signing secret, ``"gpurelay/job-webhook/" + tenant``)). Gateway and notifier share
the signing secret, so the gateway can show a tenant its job-webhook secret without storing one.

:func:`targets_of` names the endpoints one event goes to.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from contracts.api.webhooks import WebhookRecord
from contracts.envelope import EventEnvelope
from contracts.ids import tenant_key
from contracts.job_record import JobRecord
from contracts.specs.jobs import WebhookTarget
from services.common.nats.kv_watch import KvWatch
from services.common.webhook_queue import JOB_HOOK_PREFIX, JOB_HOOKS_QUEUE
from services.notifier.webhooks.write_notices import WriteNotices

log = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT_S = 30.0
"""How long :meth:`EndpointCache.start` waits for the current endpoints."""


def is_job_hook_queue(queue: str) -> bool:
    """Whether ``queue`` (the endpoint token of a delivery subject) holds per-job webhook deliveries:
    the shared queue, or one per job as notifiers before the shared queue made them."""
    return queue == JOB_HOOKS_QUEUE or queue.startswith(JOB_HOOK_PREFIX)


def job_hook_id(job_id: str) -> str:
    """The endpoint id of ``job_id``'s per-job webhook (one subject token, at most 64 characters)."""
    endpoint = JOB_HOOK_PREFIX + job_id
    if len(endpoint) > 64:
        endpoint = JOB_HOOK_PREFIX + hashlib.sha256(job_id.encode()).hexdigest()[:40]
    return endpoint


def job_webhook_secret(signing_secret: bytes, tenant: str) -> str:
    """The Standard Webhooks secret that signs ``tenant``'s per-job webhooks."""
    digest = hmac.new(signing_secret, f"gpurelay/job-webhook/{tenant}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one delivery goes right now: URL, secrets and whether deliveries may proceed."""

    tenant: str
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]
    enabled: bool = True


class EndpointCache:
    """KV ``webhooks`` in memory: ``tenant → endpoint id → record``, kept current by a :class:`KvWatch`."""

    def __init__(self, kv: KeyValue, js: JetStreamContext, bucket: str) -> None:
        self.kv, self.js, self.bucket = kv, js, bucket
        self.records: dict[str, dict[str, WebhookRecord]] = {}
        self._watch = KvWatch(kv, self._apply, name="webhook-endpoints-watcher")
        self._notices = WriteNotices(js._nc, bucket)
        self._checking = asyncio.Lock()  # one check at a time: see caught_up
        self.listeners: list[Callable[[str, str, WebhookRecord | None, WebhookRecord | None], None]] = []
        """Called with ``(tenant, endpoint id, old record, new record)`` on every change."""

    async def start(self) -> None:
        """Start watching; returns once the current values are loaded."""
        await self._notices.start()
        await self._watch.start(SNAPSHOT_TIMEOUT_S)

    async def stop(self) -> None:
        """Stop watching."""
        await self._watch.stop()
        await self._notices.stop()

    def _apply(self, entry: KeyValue.Entry, _initial: bool) -> None:
        tenant, _, endpoint_id = entry.key.partition(".")
        record: WebhookRecord | None = None
        if entry.operation is None and entry.value:
            try:
                record = WebhookRecord.model_validate_json(entry.value)
            except ValidationError:
                log.warning("ignoring an invalid webhook record", extra={"key": entry.key})
        if record is None:
            old = self.records.get(tenant, {}).pop(endpoint_id, None)
        else:
            old = self.records.setdefault(tenant, {}).get(endpoint_id)
            self.records[tenant][endpoint_id] = record
        for listener in self.listeners:
            listener(tenant, endpoint_id, old, record)

    async def caught_up(self, timeout_s: float = 5.0) -> None:
        """Wait until every KV write stored before any message this connection has received (the event
        about to be fanned out, a kick) has reached the cache: at once when no write was noticed since
        the last time it had (:class:`WriteNotices`, on a single server), else by asking the bucket.

        Checks go one at a time: the notices count as checked when a check is *sent*, so a caller that
        found nothing due beside a check on its way (a kick beside the fan-out's batch) would otherwise
        read the cache before that check's answer brought the write in, and take a live endpoint for a
        deleted one."""
        async with self._checking:
            if not self._notices.check_due():
                return
            try:
                await self._watch.caught_up(self.js, self.bucket, timeout_s)
            except BaseException:
                self._notices.unchecked()
                raise

    def matching(self, tenant: str, event_type: str) -> list[WebhookRecord]:
        """The enabled endpoints of ``tenant`` subscribed to ``event_type``."""
        return [r for r in self.records.get(tenant, {}).values() if r.enabled and r.matches(event_type)]

    def get(self, tenant: str, endpoint_id: str) -> WebhookRecord | None:
        """One endpoint's record, if it exists."""
        return self.records.get(tenant, {}).get(endpoint_id)


class JobHooks:
    """The per-job webhook of each job (from ``job.created`` or the KV job record), cached."""

    def __init__(self, jobs: KeyValue, size: int = 10_000) -> None:
        self.jobs = jobs
        self.size = size
        self._cache: OrderedDict[str, WebhookTarget | None] = OrderedDict()

    def remember(self, tenant: str, job_id: str, target: WebhookTarget | None) -> None:
        """Record ``job_id``'s webhook (from its ``job.created`` event)."""
        key = tenant_key(tenant, job_id)
        self._cache[key] = target
        self._cache.move_to_end(key)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)

    async def get(self, tenant: str, job_id: str) -> WebhookTarget | None:
        """``job_id``'s webhook, or ``None`` (no webhook, or no such job)."""
        key = tenant_key(tenant, job_id)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            entry = await self.jobs.get(key)
        except KeyNotFoundError:
            return None  # not cached: the record may appear later
        target = None
        if entry.value:
            try:
                target = JobRecord.model_validate_json(entry.value).spec.webhook
            except ValidationError:
                log.warning("unreadable job record", extra={"key": key})
        self.remember(tenant, job_id, target)
        return target


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (event, endpoint) pair to enqueue."""

    tenant: str
    endpoint_id: str
    url: str | None  # only for per-job webhooks; KV endpoints are looked up at delivery time


async def targets_of(envelope: EventEnvelope, endpoints: EndpointCache, job_hooks: JobHooks) -> list[Delivery]:
    """The endpoints ``envelope`` goes to: its tenant's enabled KV endpoints whose globs match its type,
    and its job's own webhook when that matches (remembered from ``job.created``, else read)."""
    tenant = envelope.tenant
    found = [Delivery(tenant, r.id, None) for r in endpoints.matching(tenant, envelope.type)]
    if envelope.job_id is None:
        return found
    if envelope.type == "job.created":
        hook = envelope.data.get("spec", {}).get("webhook")
        try:
            target = WebhookTarget.model_validate(hook) if hook else None
        except ValidationError:
            target = None
        job_hooks.remember(tenant, envelope.job_id, target)
    else:
        target = await job_hooks.get(tenant, envelope.job_id)
    if target is not None and target.matches(envelope.type):
        found.append(Delivery(tenant, job_hook_id(envelope.job_id), str(target.url)))
    return found
