"""Who may do what on NATS: one user per service role, each limited to its subjects, buckets and API calls.

The roles are ``gateway``, ``dispatcher``, ``notifier``, ``worker`` (the local pool's processes, and the
gateway's ingest route, which publishes Modal workers' events) and ``operator`` (the CLI, ``gpurelay nats
declare``, the bootstrap of ``gpurelay dev``). Each role's :class:`Grant` names what it publishes and
subscribes to (subjects under the namespace) and, per stream or bucket (by the base names of
:mod:`contracts.streams`), what it may do there (:data:`VERBS`). :func:`role_permissions` renders a
role's publish and subscribe allow-lists from the namespace and the declarations, and refuses a name
they lack, so grants and declarations cannot drift apart; the operator manages everything declared.

Every role receives replies only on its own inbox prefix (:func:`inbox_prefix`), so one role cannot
read another's replies; a connection sets it as nats-py's ``inbox_prefix``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

from contracts import streams as s
from contracts.streams import Declarations
from contracts.subjects import JOB_RECORDS, Namespace

Role = Literal["gateway", "dispatcher", "notifier", "worker", "operator"]
ROLES: tuple[Role, ...] = get_args(Role)
Verb = Literal["info", "elections", "get", "consume", "put", "delete", "purge", "manage"]
VERBS: tuple[Verb, ...] = get_args(Verb)
"""info: the stream's info; elections: hear its leader elections (advisories); get: one stored message
(direct or through the API); consume: consumers of any kind, their pulls, acks, flow control and
advisories; put: a bucket's keys (write, delete); delete: one stored message; purge: the stream's
messages; manage: create, update and delete it, have its leader step down (and all else)."""
READ: frozenset[Verb] = frozenset({"info", "get", "consume"})
WRITE: frozenset[Verb] = READ | {"put"}
MANAGE: frozenset[Verb] = frozenset(VERBS)
API = "$JS.API"

WORKER_EVENTS = (
    "started", "progress", "log", "artifact", "heartbeat", "stage", "succeeded", "failed",
    "snapshot", "result", "alert", "ready", "resumed",
)  # fmt: skip
"""The job events a worker reports (the ingest route's ``WORKER_EVENT_TYPES``); the rest are the platform's."""
GATEWAY_EVENTS = ("created", "cancel_requested", "stop_requested")
DISPATCHER_EVENTS = (
    "created", "queued", "position", "dispatched", "retrying", "stage", "succeeded", "failed", "canceled",
)  # fmt: skip
"""``created``: the sweeper publishes a lost ``job.created`` again (:mod:`services.dispatcher.scheduling.sweeper`)."""


def job_events(names: Iterable[str]) -> tuple[str, ...]:
    """``jobs.*.*.{name}`` of each event name."""
    return tuple(f"jobs.*.*.{name}" for name in names)


@dataclass(frozen=True)
class Grant:
    """What one role may do: subjects (under the namespace) and verbs per stream and bucket (base names)."""

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    streams: dict[str, frozenset[Verb]] = field(default_factory=dict)
    buckets: dict[str, frozenset[Verb]] = field(default_factory=dict)


GRANTS: dict[Role, Grant] = {
    "gateway": Grant(
        publish=(
            *job_events(GATEWAY_EVENTS), "uploads.*.*.completed", "robots.*.*.joints",
            "sessions.*.*.frames", "sessions.*.*.control", "webhooks.*.*.deliver", "webhooks.*.*.kick",
        ),
        streams={
            s.JOBS: READ, s.FRAMES: READ, s.TELEMETRY: READ, s.DEADLETTER: READ | {"delete"},
            s.WEBHOOK_DELIVERIES: frozenset({"info"}),
        },
        buckets={
            s.KV_JOBS: WRITE, s.KV_IDEMPOTENCY: WRITE, s.KV_APIKEYS: READ, s.KV_WEBHOOKS: WRITE,
            s.KV_SESSIONS: WRITE, s.KV_ROBOTS: WRITE, s.KV_UPLOADS: WRITE, s.KV_QUOTAS: READ,
            s.KV_TENANT_USAGE: READ, s.KV_DISPATCH_QUEUE: READ, s.KV_DISPATCH_RUNTIMES: READ,
            s.KV_TENANT_CORS: WRITE,
        },
    ),
    "dispatcher": Grant(
        publish=(*job_events(DISPATCHER_EVENTS), "dispatch.>", "deadletter.dispatcher.>"),
        subscribe=(f"{JOB_RECORDS}.>", *job_events(["heartbeat"])),  # heard as they pass (running/hearing.py)
        streams={
            s.JOBS: READ, s.DISPATCH: READ, s.DEADLETTER: frozenset({"info"}), s.JOBS_FOLD: MANAGE,
        },  # JOBS_FOLD: an upgrade retires the copy an earlier version folded from (fold/partitions.py)
        buckets={
            s.KV_JOBS: WRITE, s.KV_UPLOADS: READ, s.KV_DISPATCHER_WAITS: WRITE, s.KV_DISPATCH_QUEUE: WRITE,
            s.KV_DISPATCH_FAIR: WRITE, s.KV_DISPATCH_RUNTIMES: WRITE, s.KV_QUOTAS: READ, s.KV_TENANT_USAGE: WRITE,
            s.KV_FOLD_REFOLDS: WRITE,
        },
    ),
    "notifier": Grant(
        publish=("webhooks.*.*.deliver", "webhooks.*.*.dead", "webhooks.*.*.kick"),
        subscribe=("webhooks.*.*.kick",),
        streams={s.JOBS: READ, s.WEBHOOK_DELIVERIES: READ | {"purge"}},
        buckets={
            s.KV_WEBHOOKS: WRITE, s.KV_APIKEYS: READ, s.KV_JOBS: READ, s.KV_SESSIONS: READ,
            s.KV_NOTIFIER_LEASES: MANAGE, s.KV_WEBHOOK_DELIVERIES: MANAGE, s.KV_TENANT_CORS: READ,
        },
    ),
    "worker": Grant(
        # A session fed from its source (services/common/session_publish.py) has its local worker publish
        # the session's input as a client's would: frames, control (a stop also as the event), joints.
        publish=(
            *job_events(WORKER_EVENTS), *job_events(["stop_requested"]),
            "sessions.*.*.frames", "sessions.*.*.control", "robots.*.*.joints",
        ),
        subscribe=job_events(["cancel_requested"]),
        streams={s.FRAMES: READ, s.TELEMETRY: READ},
        buckets={s.KV_SESSIONS: WRITE},
    ),
}  # fmt: skip
"""Every role but the operator, whose grant is everything declared (:func:`operator_grant`)."""


def operator_grant(decls: Declarations, ns: Namespace) -> Grant:
    """Manage every declared and service-made stream and bucket; publish and watch every subject of them."""
    subjects = tuple(ns.strip(subject) for decl in decls.streams for subject in decl.subjects)
    owned = {name: MANAGE for name in s.OWNED_STREAMS}
    return Grant(
        publish=(*subjects, "webhooks.*.*.kick"),
        subscribe=(*subjects, f"{JOB_RECORDS}.>"),
        streams={_base(ns, decl.name): MANAGE for decl in decls.streams} | owned,
        buckets={_base(ns, decl.name): MANAGE for decl in decls.buckets} | {name: MANAGE for name in s.OWNED_BUCKETS},
    )


def _base(ns: Namespace, name: str) -> str:
    prefix = f"{ns.name}_" if ns.name else ""
    return name.removeprefix(prefix)


@dataclass(frozen=True)
class Permissions:
    """One user's allow-lists (full subjects); everything else is refused by the server."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def user_name(ns: Namespace, role: Role) -> str:
    """The NATS user of ``role`` in namespace ``ns`` (``gateway``, ``t1_gateway``)."""
    return ns.bucket(role)


def inbox_prefix(user: str) -> str:
    """The inbox prefix of ``user``'s connections: replies to it arrive under ``_INBOX.{user}.``."""
    return f"_INBOX.{user}"


def stream_api(stream: str, verbs: frozenset[Verb]) -> tuple[list[str], list[str]]:
    """The publish and subscribe subjects of ``verbs`` on the stream called ``stream`` (its full name)."""
    every = MANAGE if "manage" in verbs else verbs
    publish: list[str] = []
    subscribe: list[str] = []
    if "info" in every:
        publish.append(f"{API}.STREAM.INFO.{stream}")
    if "elections" in every:
        subscribe.append(f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{stream}")
    if "get" in every:
        publish += [f"{API}.DIRECT.GET.{stream}", f"{API}.DIRECT.GET.{stream}.>", f"{API}.STREAM.MSG.GET.{stream}"]
    if "consume" in every:
        publish += [f"{API}.CONSUMER.{verb}.{stream}" for verb in ("CREATE", "LIST", "NAMES")]
        publish += [
            f"{API}.CONSUMER.{verb}.{stream}.>"
            for verb in ("CREATE", "DURABLE.CREATE", "INFO", "DELETE", "MSG.NEXT", "UNPIN")
        ]
        publish += [f"$JS.ACK.{stream}.>", f"$JS.FC.{stream}.>"]
        subscribe.append(f"$JS.EVENT.ADVISORY.CONSUMER.*.{stream}.>")
    if "delete" in every:
        publish.append(f"{API}.STREAM.MSG.DELETE.{stream}")
    if "purge" in every:
        publish.append(f"{API}.STREAM.PURGE.{stream}")
    if "manage" in every:
        publish += [f"{API}.STREAM.{verb}.{stream}" for verb in ("CREATE", "UPDATE", "DELETE", "LEADER.STEPDOWN")]
    return publish, subscribe


def role_permissions(role: Role, ns: Namespace, decls: Declarations) -> Permissions:
    """``role``'s allow-lists in ``ns``; ``KeyError`` for a stream or bucket the declarations lack."""
    grant = operator_grant(decls, ns) if role == "operator" else GRANTS[role]
    known_streams = {_base(ns, d.name) for d in decls.streams} | set(s.OWNED_STREAMS)
    known_buckets = {_base(ns, d.name) for d in decls.buckets} | set(s.OWNED_BUCKETS)
    publish = [ns.subject(subject) for subject in grant.publish]
    subscribe = [ns.subject(subject) for subject in grant.subscribe] + [inbox_prefix(user_name(ns, role)) + ".>"]
    for name, verbs in grant.streams.items():
        if name not in known_streams:
            raise KeyError(f"{role}: stream {name} is not declared")
        pub, sub = stream_api(ns.stream(name), verbs)
        publish += pub
        subscribe += sub
    for name, verbs in grant.buckets.items():
        if name not in known_buckets:
            raise KeyError(f"{role}: bucket {name} is not declared")
        bucket = ns.bucket(name)
        pub, sub = stream_api(f"KV_{bucket}", verbs)
        publish += pub + ([f"$KV.{bucket}.>"] if verbs & {"put", "manage"} else [])
        # A reader may also hear the bucket's writes as they are stored (a core subscription: what its
        # consumers would bring anyway), as the webhook fan-out's write notices do.
        subscribe += sub + ([f"$KV.{bucket}.>"] if verbs & {"consume", "manage"} else [])
    if role == "operator":
        publish += [f"{API}.INFO", f"{API}.STREAM.NAMES", f"{API}.STREAM.LIST"]
        # The administrator may watch everything of its namespace (nats sub '>', the message counter);
        # without a namespace that is every subject, the other roles' replies included.
        subscribe += [ns.subject(">")] if ns.name else [">"]
    return Permissions(tuple(dict.fromkeys(publish)), tuple(dict.fromkeys(subscribe)))


def role_of(ns: Namespace, user: str) -> Role | None:
    """The role whose user in ``ns`` is ``user`` (``None``: a user of none)."""
    return next((role for role in ROLES if user_name(ns, role) == user), None)


def bound_streams(role: Role, ns: Namespace, decls: Declarations) -> list[str]:
    """The declared streams (full names; buckets as ``KV_{bucket}``) whose info ``role`` may read: those it
    binds to at start-up."""
    grant = operator_grant(decls, ns) if role == "operator" else GRANTS[role]
    names = [ns.stream(name) for name, verbs in grant.streams.items() if verbs & {"info", "manage"}]
    names += [f"KV_{ns.bucket(name)}" for name, verbs in grant.buckets.items() if verbs & {"info", "manage"}]
    declared = {d.name for d in decls.streams} | {f"KV_{d.name}" for d in decls.buckets}
    return [name for name in names if name in declared]
