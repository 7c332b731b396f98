"""The one function that applies the stream and KV declarations, and the check that they exist.

The operator (``gpurelay nats declare``; ``gpurelay dev`` at start-up, a service without a NATS user)
creates what is missing and updates what differs where JetStream allows it; a service connected as its
role's user only checks that the streams and buckets it binds to are there (:func:`declare_all`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import NotFoundError

from contracts.streams import BucketDecl, Declarations, StreamDecl, declarations
from services.common.config import BaseServiceSettings
from services.common.nats.permissions import bound_streams, role_of
from services.common.nats.publish import placement_pending, until_answered

log = logging.getLogger(__name__)


def stream_config(decl: StreamDecl) -> StreamConfig:
    """The nats-py config of a declared stream."""
    return StreamConfig(
        name=decl.name,
        description=decl.description or None,
        subjects=list(decl.subjects),
        storage=StorageType.FILE if decl.storage == "file" else StorageType.MEMORY,
        retention=RetentionPolicy.WORK_QUEUE if decl.retention == "work_queue" else RetentionPolicy.LIMITS,
        max_age=decl.max_age_s,
        duplicate_window=decl.duplicate_window_s,
        max_bytes=decl.max_bytes,
        max_msgs_per_subject=decl.max_msgs_per_subject,
        discard=DiscardPolicy.NEW if decl.discard == "new" else DiscardPolicy.OLD,
        discard_new_per_subject=decl.discard_new_per_subject,
        max_consumers=decl.max_consumers,
        num_replicas=decl.replicas,
        allow_direct=decl.allow_direct,
        subject_transform=SubjectTransform(*decl.subject_transform) if decl.subject_transform else None,
    )


def bucket_config(decl: BucketDecl) -> KeyValueConfig:
    """The nats-py config of a declared KV bucket."""
    return KeyValueConfig(
        bucket=decl.name,
        description=decl.description or None,
        history=decl.history,
        ttl=decl.ttl_s or None,
        storage=StorageType.FILE if decl.storage == "file" else StorageType.MEMORY,
        replicas=decl.replicas,
        republish=_republish(decl),
    )


def _republish(decl: BucketDecl) -> RePublish | None:
    """Every stored entry of the bucket published again on ``{decl.republish}.{key}`` (none without it)."""
    return RePublish(src=f"$KV.{decl.name}.>", dest=f"{decl.republish}.>") if decl.republish else None


def _same_republish(current: RePublish | None, wanted: RePublish | None) -> bool:
    if current is None or wanted is None:
        return current is wanted
    return (current.src, current.dest, bool(current.headers_only)) == (wanted.src, wanted.dest, False)


@dataclass
class ApplyReport:
    """What :func:`apply_declarations` did, by stream or bucket name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """Streams left as they are: their retention differs from the declaration (JetStream cannot change it)."""


def _stream_differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    return (
        sorted(current.subjects or []) != sorted(wanted.subjects or [])
        or (current.max_age or 0) != (wanted.max_age or 0)
        or (current.duplicate_window or 0) != (wanted.duplicate_window or 0)
        or (current.max_bytes if current.max_bytes is not None else -1) != wanted.max_bytes
        or _or(current.max_msgs_per_subject, -1) != _or(wanted.max_msgs_per_subject, -1)
        or _or(current.discard, DiscardPolicy.OLD) != _or(wanted.discard, DiscardPolicy.OLD)
        or bool(current.discard_new_per_subject) != bool(wanted.discard_new_per_subject)
        or (current.description or None) != (wanted.description or None)
        or (current.num_replicas or 1) != (wanted.num_replicas or 1)
        or bool(current.allow_direct) != bool(wanted.allow_direct)
        or _transform(current.subject_transform) != _transform(wanted.subject_transform)
    )


def _transform(transform: SubjectTransform | None) -> tuple[str, str] | None:
    return (transform.src, transform.dest) if transform else None


def _or(value: object, default: object) -> object:
    return default if value is None else value


async def _apply_stream(js: JetStreamContext, wanted: StreamConfig, report: ApplyReport) -> None:
    assert wanted.name is not None
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        await js.add_stream(wanted)
        report.created.append(wanted.name)
        return
    if _or(info.config.retention, RetentionPolicy.LIMITS) != wanted.retention:
        log.error(
            "stream %s has retention %s but %s is declared; JetStream cannot change it in place, so the stream "
            "is kept as it is (see docs/operations.md to migrate it)",
            wanted.name,
            info.config.retention,
            wanted.retention,
        )
        report.kept.append(wanted.name)
    elif _stream_differs(info.config, wanted):
        await js.update_stream(wanted)
        report.updated.append(wanted.name)
    else:
        report.unchanged.append(wanted.name)


async def _apply_bucket(js: JetStreamContext, decl: BucketDecl, report: ApplyReport) -> None:
    stream_name = f"KV_{decl.name}"
    try:
        info = await js.stream_info(stream_name)
    except NotFoundError:
        await js.create_key_value(bucket_config(decl))
        report.created.append(decl.name)
        return
    config = info.config
    wanted_ttl = decl.ttl_s or 0.0
    if (
        (config.max_msgs_per_subject or 1) != decl.history
        or (config.max_age or 0.0) != wanted_ttl
        or (config.description or None) != (decl.description or None)
        or (config.num_replicas or 1) != decl.replicas
        or not _same_republish(config.republish, _republish(decl))
    ):
        config.max_msgs_per_subject = decl.history
        config.max_age = wanted_ttl
        config.description = decl.description or None
        config.num_replicas = decl.replicas
        config.republish = _republish(decl)
        if wanted_ttl and (config.duplicate_window or 0.0) > wanted_ttl:
            config.duplicate_window = wanted_ttl  # the server refuses a window longer than the TTL
        await js.update_stream(config)
        report.updated.append(decl.name)
    else:
        report.unchanged.append(decl.name)


async def apply_declarations(js: JetStreamContext, decls: Declarations) -> ApplyReport:
    """Create missing streams and buckets, update changed ones, leave equal ones alone.

    Each step is tried again while NATS is slow or away (:func:`until_answered`): every one may be, since
    a stream made by a request whose answer was lost is found the next time, and an equal update does
    nothing. So is a replicated stream a forming cluster cannot place yet (:func:`placement_pending`),
    until its last node joins or the retries run out."""
    report = ApplyReport()
    for stream in decls.streams:
        wanted = stream_config(stream)
        apply = functools.partial(_apply_stream, js, wanted, report)
        await until_answered(apply, f"declare stream {wanted.name}", also_retried=placement_pending)
    for bucket in decls.buckets:
        apply = functools.partial(_apply_bucket, js, bucket, report)
        await until_answered(apply, f"declare bucket {bucket.name}", also_retried=placement_pending)
    if report.created or report.updated:
        # not ``created``: a LogRecord attribute, which ``extra`` may not overwrite (KeyError at INFO)
        applied = {"declarations_created": report.created, "declarations_updated": report.updated}
        log.info("jetstream declarations applied", extra=applied)
    return report


async def declare_all(js: JetStreamContext, settings: BaseServiceSettings) -> ApplyReport:
    """Apply the v1 declarations of this deployment's namespace, or, connected as a user (``nats_user``
    set), check that the streams and buckets its role binds to are there: only the operator creates and
    updates them (``gpurelay nats declare``; ``gpurelay dev`` at start-up), a service binds."""
    decls = declarations_of(settings)
    if not settings.nats_user:
        return await apply_declarations(js, decls)
    role = role_of(settings.ns, settings.nats_user)
    return await check_declarations(js, bound_streams(role, settings.ns, decls) if role else [])


class NotDeclaredError(RuntimeError):
    """A declared stream or bucket is missing and this connection may not create it."""


async def check_declarations(js: JetStreamContext, names: list[str]) -> ApplyReport:
    """The streams ``names`` (a KV bucket's is ``KV_{bucket}``) as they are (``unchanged``: none is touched);
    raise :class:`NotDeclaredError` naming those missing. Each look is tried again while NATS is slow or away
    (:func:`until_answered`): a loaded cluster left a gateway's look unanswered within its time-out, and the
    gateway exited during start-up."""
    report, missing = ApplyReport(), []
    for name in names:
        try:
            await until_answered(functools.partial(js.stream_info, name), f"look up stream {name}")
        except NotFoundError:
            missing.append(name)
        else:
            report.unchanged.append(name)
    if missing:
        raise NotDeclaredError(
            f"streams {', '.join(missing)} are not on NATS, and this service's user may not create them: "
            "run `gpurelay nats declare` as the operator first"
        )
    return report


def declarations_of(settings: BaseServiceSettings) -> Declarations:
    """The v1 declarations of this deployment: its namespace and its stream and bucket limits."""
    return declarations(
        settings.ns,
        frames_max_bytes=settings.frames_max_bytes,
        webhook_queue_max_msgs=settings.webhook_queue_max_msgs,
        webhook_queue_max_bytes=settings.webhook_queue_max_bytes,
        telemetry_max_bytes=settings.telemetry_max_bytes,
        robots_ttl_s=settings.robot_latest_ttl_s,
        replicas=settings.nats_replicas,
    )
