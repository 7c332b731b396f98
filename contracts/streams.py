"""JetStream stream and KV bucket declarations (v1), as plain data.

:func:`declarations` lists every stream and bucket of a namespace; the services apply them with
``services.common.nats.declarations.apply_declarations``, which is idempotent (applying twice changes
nothing; a changed declaration updates the stream in place).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from contracts.base import Contract
from contracts.subjects import JOB_RECORDS, NO_NAMESPACE, Namespace, job_slot_transform

HOUR = 3600.0
DAY = 24 * HOUR


class StreamDecl(Contract):
    """One JetStream stream."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    subjects: tuple[str, ...]
    storage: Literal["file", "memory"] = "file"
    retention: Literal["limits", "work_queue"] = "limits"
    max_age_s: float = Field(default=0.0, ge=0, description="0 keeps messages forever.")
    duplicate_window_s: float = Field(default=120.0, ge=0)
    max_bytes: int = Field(default=-1, description="-1 is unlimited.")
    max_msgs_per_subject: int = Field(default=-1, description="-1 is unlimited.")
    discard: Literal["old", "new"] = Field(
        default="old", description="At a limit: drop the oldest messages, or refuse new ones."
    )
    discard_new_per_subject: bool = Field(
        default=False, description="With discard new: refuse only on the subject at max_msgs_per_subject."
    )
    max_consumers: int = Field(default=-1, description="-1 is the server's default (1,000 on nats-server 2.15).")
    replicas: int = Field(default=1, ge=1, le=5, description="Copies kept on a cluster's nodes (1 on a single server).")
    allow_direct: bool = Field(
        default=False,
        description="Direct gets (``$JS.API.DIRECT.GET``), batches included, answered by any replica, not only the "
        "leader.",
    )
    subject_transform: tuple[str, str] | None = Field(
        default=None, description="Each stored subject matching the source rewritten as the destination."
    )
    description: str = ""


class BucketDecl(Contract):
    """One JetStream key-value bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    history: int = Field(default=1, ge=1, le=64)
    ttl_s: float = Field(default=0.0, ge=0, description="0 keeps entries forever.")
    storage: Literal["file", "memory"] = "file"
    replicas: int = Field(default=1, ge=1, le=5, description="Copies kept on a cluster's nodes (1 on a single server).")
    republish: str | None = Field(
        default=None,
        description="Subject prefix on which the server publishes every stored entry again, once stored and in "
        "order (``{prefix}.{key}``, with its stream sequence): a core subscription follows one key without a "
        "consumer.",
    )
    description: str = ""


class Declarations(Contract):
    """Every stream and bucket of one namespace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    streams: tuple[StreamDecl, ...]
    buckets: tuple[BucketDecl, ...]

    def stream(self, base_name: str, ns: Namespace | None = None) -> StreamDecl:
        """The stream declared as ``base_name`` (e.g. ``JOBS``)."""
        wanted = (ns or NO_NAMESPACE).stream(base_name)
        for decl in self.streams:
            if decl.name == wanted:
                return decl
        raise KeyError(base_name)


# Stream base names.
JOBS = "JOBS"
TELEMETRY = "TELEMETRY"
FRAMES = "FRAMES"
DEADLETTER = "DEADLETTER"
WEBHOOK_DELIVERIES = "WEBHOOK_DELIVERIES"
DISPATCH = "DISPATCH"

# Bucket base names.
KV_JOBS = "jobs"
KV_IDEMPOTENCY = "idempotency"
KV_APIKEYS = "apikeys"
KV_WEBHOOKS = "webhooks"
KV_SESSIONS = "sessions"
KV_ROBOTS = "robots"
KV_UPLOADS = "uploads"
KV_DISPATCHER_WAITS = "dispatcher_waits"
KV_DISPATCH_QUEUE = "dispatch_queue"
KV_DISPATCH_FAIR = "dispatch_fair"
KV_DISPATCH_RUNTIMES = "dispatch_runtimes"
KV_FOLD_REFOLDS = "fold_refolds"
KV_QUOTAS = "quotas"
KV_TENANT_USAGE = "tenant_usage"
KV_TENANT_CORS = "tenant_cors"

# Made by the one service that uses them, in its own shape (not in :func:`declarations`); named here so
# that the NATS permissions (services/common/nats/permissions.py) can grant them.
JOBS_FOLD = "JOBS_FOLD"
"""The copy of JOBS (sourced by fold partition) the dispatcher folded from until 2026-11-30: one that finds it
starts its partitions on JOBS after what it held, then deletes it (services/dispatcher/fold/partitions.py)."""
KV_NOTIFIER_LEASES = "notifier_leases"
"""Who of the notifier replicas runs the fan-out and each delivery queue."""
KV_WEBHOOK_DELIVERIES = "webhook_deliveries"
"""The notifier's view of each webhook delivery's attempts."""
KV_JOBS_REBUILD = "jobs_rebuild"
"""``gpurelay replay --rebuild jobs``: the records rebuilt from JOBS, beside KV jobs."""
OWNED_STREAMS = (JOBS_FOLD,)
OWNED_BUCKETS = (KV_NOTIFIER_LEASES, KV_WEBHOOK_DELIVERIES, KV_JOBS_REBUILD)

FRAMES_MAX_BYTES = 2 * 1024**3
WEBHOOK_QUEUE_MAX_MSGS = 100_000
"""Deliveries waiting in one endpoint's queue (``webhooks.{tenant}.{endpoint}.deliver``); more are refused."""
WEBHOOK_QUEUE_MAX_BYTES = 2 * 1024**3
"""Bytes waiting in every delivery queue together; more are refused."""
TELEMETRY_MAX_BYTES = 4 * 1024**3
ROBOTS_TTL_S = DAY
JOBS_MAX_CONSUMERS = 20_000
"""Each SSE connection holds one ephemeral consumer on JOBS; the server's default allows 1,000."""


def declarations(
    ns: Namespace | None = None,
    frames_max_bytes: int = FRAMES_MAX_BYTES,
    webhook_queue_max_msgs: int = WEBHOOK_QUEUE_MAX_MSGS,
    webhook_queue_max_bytes: int = WEBHOOK_QUEUE_MAX_BYTES,
    telemetry_max_bytes: int = TELEMETRY_MAX_BYTES,
    robots_ttl_s: float = ROBOTS_TTL_S,
    replicas: int = 1,
) -> Declarations:
    """The v1 streams and buckets under ``ns``; no two streams' subjects overlap.

    WEBHOOK_DELIVERIES is a work queue without an age limit: a delivery leaves it only when it is
    delivered or dead-lettered (its retries, and the older deliveries of its job before it, may take
    days; a disabled endpoint's queue waits). It is bounded by count per endpoint queue and by bytes
    in all, refusing new deliveries at either limit (the notifier dead-letters a refused one) rather
    than dropping waiting ones. TELEMETRY keeps at most ``telemetry_max_bytes`` (the oldest samples
    go first) and KV ``robots`` forgets a robot ``robots_ttl_s`` after its latest sample. Every stream
    and bucket keeps ``replicas`` copies (3 on a 3-node cluster, so one node may fail).
    """
    ns = ns or NO_NAMESPACE
    s = ns.subject
    decls = Declarations(
        streams=(
            StreamDecl(
                name=ns.stream(JOBS),
                subjects=(s("jobs.>"), s("uploads.>")),
                max_age_s=30 * DAY,
                duplicate_window_s=120.0,
                max_consumers=JOBS_MAX_CONSUMERS,
                allow_direct=True,  # SSE catch-ups read it in batches (services/notifier/sse/catch_up.py)
                subject_transform=job_slot_transform(ns),  # the fold's partitions read slots of it
                description="Every job and upload event: the platform's log of record.",
            ),
            StreamDecl(
                name=ns.stream(TELEMETRY),
                subjects=(s("robots.>"),),
                max_age_s=DAY,
                max_bytes=telemetry_max_bytes,
                description="Robots' joint-angle samples.",
            ),
            StreamDecl(
                name=ns.stream(FRAMES),
                subjects=(s("sessions.*.*.frames"), s("sessions.*.*.control")),
                max_age_s=HOUR,
                max_bytes=frames_max_bytes,
                description="Live session frames and their control (stop, reset), in one order per session.",
            ),
            StreamDecl(
                name=ns.stream(DEADLETTER),
                subjects=(s("webhooks.*.*.dead"), s("deadletter.>")),
                max_age_s=14 * DAY,
                description="Webhook deliveries that exhausted their retries; messages a consumer gave up on.",
            ),
            StreamDecl(
                name=ns.stream(WEBHOOK_DELIVERIES),
                subjects=(s("webhooks.*.*.deliver"),),
                retention="work_queue",
                max_bytes=webhook_queue_max_bytes,
                max_msgs_per_subject=webhook_queue_max_msgs,
                discard="new",
                discard_new_per_subject=True,
                description="Webhook delivery queues; a delivery stays until delivered or dead-lettered.",
            ),
            StreamDecl(
                name=ns.stream(DISPATCH),
                subjects=(s("dispatch.>"),),
                retention="work_queue",
                description="Dispatch tickets: one per attempt to run, held un-acked while it runs.",
            ),
        ),
        buckets=(
            BucketDecl(
                name=ns.bucket(KV_JOBS),
                history=5,
                republish=s(JOB_RECORDS),
                description="Job records (the dispatcher's projection).",
            ),
            BucketDecl(name=ns.bucket(KV_IDEMPOTENCY), ttl_s=DAY, description="Idempotency-Key → job id."),
            BucketDecl(name=ns.bucket(KV_APIKEYS), description="API key hashes → tenant."),
            BucketDecl(name=ns.bucket(KV_WEBHOOKS), description="Webhook endpoints."),
            BucketDecl(name=ns.bucket(KV_SESSIONS), description="Live sessions."),
            BucketDecl(name=ns.bucket(KV_ROBOTS), ttl_s=robots_ttl_s, description="Latest joint angles per robot."),
            BucketDecl(name=ns.bucket(KV_UPLOADS), description="Upload records (pending, completed)."),
            BucketDecl(
                name=ns.bucket(KV_DISPATCHER_WAITS),
                description="{tenant}.{upload_id}.{job_id}: a job waits on an upload.",
            ),
            BucketDecl(
                name=ns.bucket(KV_DISPATCH_QUEUE),
                description="{kind}.{tenant}.{job_id}.{attempt}: an attempt waiting for (or holding) a slot.",
            ),
            BucketDecl(name=ns.bucket(KV_DISPATCH_FAIR), description="{kind}: the kind's fair-share clock."),
            BucketDecl(name=ns.bucket(KV_DISPATCH_RUNTIMES), description="{kind}: recent run times, for ETAs."),
            BucketDecl(
                name=ns.bucket(KV_FOLD_REFOLDS),
                ttl_s=DAY,
                description="{tenant}.{job_id}: a job to fold again from JOBS (an event of it came to the fold again).",
            ),
            BucketDecl(name=ns.bucket(KV_QUOTAS), description="{tenant}: its quotas over the deployment's defaults."),
            BucketDecl(
                name=ns.bucket(KV_TENANT_USAGE), ttl_s=2 * DAY, description="{tenant}.{YYYYMMDD}: GPU-seconds used."
            ),
            BucketDecl(name=ns.bucket(KV_TENANT_CORS), description="{tenant}: the browser origins it allows (CORS)."),
        ),
    )
    if replicas == 1:
        return decls
    return Declarations(
        streams=tuple(StreamDecl.model_validate(d.model_dump() | {"replicas": replicas}) for d in decls.streams),
        buckets=tuple(BucketDecl.model_validate(d.model_dump() | {"replicas": replicas}) for d in decls.buckets),
    )
