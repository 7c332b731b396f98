"""A service's NATS connection, its errors told apart and logged, and the bounded cancel of its tasks.

The streams and buckets it needs are applied by :mod:`services.common.nats.declarations`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient

from services.common.config import BaseServiceSettings
from services.common.nats.identity import identity_options

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


def client_options(label: str) -> dict[str, Any]:
    """What every gpurelay NATS client sets, a service's and a worker's alike: reconnecting forever, a
    ping every :data:`PING_INTERVAL_S` (nats-py's default is 2 minutes, so a server that went silent
    without closing the socket held a worker for 4), the client's errors in one line each."""
    return {
        "name": label,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": RECONNECT_WAIT_S,
        "ping_interval": PING_INTERVAL_S,
        "error_cb": error_reporter(label),
    }


def connection_options(settings: BaseServiceSettings, name: str, client: NatsClient | None = None) -> dict[str, Any]:
    """How every service connects (nats-py's options): all the servers of ``nats_url``, reconnecting
    forever, each change of connection logged, as the settings' user over their TLS
    (:func:`~services.common.nats.identity.identity_options`); the client's own errors in one line each
    (:func:`error_reporter`: a fault brought some 170 tracebacks to a netfaults run before).

    Reconnecting never gives up (nats-py's default stops after 60 attempts, two minutes of an
    outage, and leaves the client closed for good); while it reconnects, publishes wait in a
    bounded buffer (nats-py's ``pending_size``, 2 MiB) and requests time out, which callers retry.
    nats-py calls ``disconnected_cb`` on its own ``close()`` too: given the ``client`` these options are
    for, a close is logged as one (debug), not as a lost connection.
    """
    label = f"gpurelay-{name}"

    async def disconnected() -> None:
        if client is not None and client.is_closed:  # closed on purpose: nothing was lost
            log.debug("NATS connection closed", extra={"connection": label})
            return
        log.warning("NATS connection lost; reconnecting", extra={"connection": label})

    async def reconnected() -> None:
        log.warning("NATS connection re-established", extra={"connection": label})

    return (
        identity_options(settings)
        | client_options(label)
        | {
            "servers": settings.nats_servers,
            "connect_timeout": settings.nats_connect_timeout_s,
            "disconnected_cb": disconnected,
            "reconnected_cb": reconnected,
        }
    )


async def connect(settings: BaseServiceSettings, name: str) -> NatsClient:
    """A NATS connection named after the service, reconnecting forever (:func:`connection_options`)."""
    client = NatsClient()
    await client.connect(**connection_options(settings, name, client))
    return client
