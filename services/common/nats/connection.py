"""NATS connection and the one function that applies the stream and KV declarations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RePublish, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from contracts.streams import BucketDecl, Declarations, StreamDecl, declarations
from services.common.config import BaseServiceSettings
from services.common.nats.identity import identity_options
from services.common.nats.permissions import bound_streams, role_of

log = logging.getLogger(__name__)


def cancel_requested() -> bool:
    """Whether the running task was asked to stop: nats-py's ``fetch`` and ``next_msg`` can turn a
    cancel into their timeout (or, on a closed connection, into an error), so a pull loop that goes on
    after those must check this, or it swallows the cancel and its ``stop()`` hangs."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


CANCEL_AGAIN_S = 15.0
"""How long :func:`cancel_and_wait` gives a cancelled task before it cancels it again: longer than any
task's own stop grace (a fold partition finishes its batch for up to 5 s, then lets its pin go for up
to 5 s), so a second cancel never cuts a graceful stop short; it only ends a task that lost the first."""
SLOW_STOP_S = 2.0
"""A task still running this long after its cancel is named in a warning (:func:`cancel_and_wait`)."""


async def cancel_and_wait(
    tasks: Iterable[asyncio.Future[Any]], again_s: float = CANCEL_AGAIN_S, slow_s: float = SLOW_STOP_S
) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again each ``again_s`` those
    still running: a cancel that lands while a nats-py request's reply arrives is swallowed (3.11's
    ``wait_for`` returns the reply instead), and a task that goes on after it would never end. Those
    still running ``slow_s`` after a cancel are named in a warning, so a slow stop says what held it."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(slow_s, again_s))
        if pending and again_s > slow_s:
            names = sorted(getattr(task, "get_name", lambda: "?")() for task in pending)
            log.warning("%d task(s) still stopping %g s after their cancel: %s", len(pending), slow_s, ", ".join(names))
            _, pending = await asyncio.wait(pending, timeout=again_s - slow_s)
    for task, outcome in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
        if isinstance(outcome, Exception):  # a stop does not raise what a task died of: it says so
            log.warning("task %s had ended with %r", getattr(task, "get_name", lambda: "?")(), outcome)


UNAVAILABLE: tuple[type[Exception], ...] = (
    TimeoutError,  # nats-py's request timeouts too: a request lost with a connection, or unanswered
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.NoServersError,
    nats.js.errors.NoStreamResponseError,  # no stream leader answers: a cluster electing one
)
"""Errors that say NATS is away for now (a server restarting, a cluster electing a stream leader), not that
the request is wrong: worth retrying (:func:`is_unavailable`), and a 503 to an HTTP client."""
NATS_AWAY: tuple[type[Exception], ...] = (*UNAVAILABLE, nats.js.errors.ServiceUnavailableError)
"""What a call meets while NATS is slow or away: :data:`UNAVAILABLE`, and JetStream's 503s (a pull or a request
that no stream leader took, during an election or a cut). Not every such 503 passes (see
:data:`JETSTREAM_UNAVAILABLE_CODE`): answered as "away" (a 503, a warning), not retried blindly."""
JETSTREAM_UNAVAILABLE_CODE = 10008
"""JetStream's "system temporarily unavailable" (a 503 while a cluster elects its meta leader); its other
503s are refusals, such as a stream at its per-subject limit, that no retry cures."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says NATS or JetStream is away for a moment (:data:`UNAVAILABLE`)."""
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return exc.err_code == JETSTREAM_UNAVAILABLE_CODE
    return isinstance(exc, UNAVAILABLE)


def log_failure(logger: logging.Logger, exc: BaseException, message: str, *args: object, **kwargs: Any) -> None:
    """Log a failed run of background work that carries on: NATS away (:data:`NATS_AWAY`, or an error
    raised from it, such as a fold batch whose time ran out on it; what a fault brings by the hundred)
    as a warning naming the error, any other error with its traceback."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, NATS_AWAY):
        cause = cause.__cause__
    if cause is not None:
        logger.warning(f"{message} (NATS away: %r)", *args, exc, **kwargs)
    else:
        logger.error(message, *args, exc_info=exc, **kwargs)


RECONNECT_WAIT_S = 0.5
"""The pause between two reconnect attempts to the same server."""
PING_INTERVAL_S = 10.0
"""A connection that answers no ping for two intervals is given up and reconnected (a silent peer)."""


def error_reporter(label: str) -> Callable[[Exception], Awaitable[None]]:
    """nats-py's ``error_cb`` for the connection ``label``: each error the client reports on its own is one
    line, a warning (a reconnect refused, a server gone mid-read) or, for a slow consumer or a permissions
    violation, an error. nats-py's default logs each at ERROR with its traceback, every reconnect try."""

    async def report(exc: Exception) -> None:
        refused = isinstance(exc, nats.errors.SlowConsumerError) or "permission" in str(exc).lower()
        log.log(logging.ERROR if refused else logging.WARNING, "NATS: %r", exc, extra={"connection": label})

    return report


def connection_options(settings: BaseServiceSettings, name: str) -> dict[str, Any]:
    """How every service connects (nats-py's options): all the servers of ``nats_url``, reconnecting
    forever, each change of connection logged, as the settings' user over their TLS
    (:func:`~services.common.nats.identity.identity_options`); the client's own errors in one line each
    (:func:`error_reporter`: a fault brought some 170 tracebacks to a netfaults run before).

    Reconnecting never gives up (nats-py's default stops after 60 attempts, two minutes of an
    outage, and leaves the client closed for good); while it reconnects, publishes wait in a
    bounded buffer (nats-py's ``pending_size``, 2 MiB) and requests time out, which callers retry.
    """
    label = f"gpurelay-{name}"

    async def disconnected() -> None:
        log.warning("NATS connection lost; reconnecting", extra={"connection": label})

    async def reconnected() -> None:
        log.warning("NATS connection re-established", extra={"connection": label})

    return identity_options(settings) | {
        "servers": settings.nats_servers,
        "name": label,
        "connect_timeout": settings.nats_connect_timeout_s,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": RECONNECT_WAIT_S,
        "ping_interval": PING_INTERVAL_S,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error_reporter(label),
    }


async def connect(settings: BaseServiceSettings, name: str) -> NatsClient:
    """A NATS connection named after the service, reconnecting forever (:func:`connection_options`)."""
    return await nats.connect(**connection_options(settings, name))


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
    )


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
    """Create missing streams and buckets, update changed ones, leave equal ones alone."""
    report = ApplyReport()
    for stream in decls.streams:
        await _apply_stream(js, stream_config(stream), report)
    for bucket in decls.buckets:
        await _apply_bucket(js, bucket, report)
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
    raise :class:`NotDeclaredError` naming those missing."""
    report, missing = ApplyReport(), []
    for name in names:
        try:
            await js.stream_info(name)
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
