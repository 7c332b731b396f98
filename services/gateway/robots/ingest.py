"""Robot joint-angle ingest shared by the HTTP and WebSocket routes: publish, remember, authenticate.

Each accepted sample is one ``robot.joints`` envelope on ``robots.{tenant}.{robot_id}.joints``
(stream TELEMETRY), built by :class:`~contracts.api.robots.JointEventEncoder`. No sample waits
for its own JetStream ack: samples are core-published in order on the gateway's one connection,
and one sample in a while is published as a JetStream request whose ack, the stream being fed in
order, vouches for every sample before it. That is the last sample of each batch, the sample of
each count- or time-driven WebSocket ack, and otherwise one in every ``robot_confirm_every``,
which bounds what is in flight unconfirmed well below the server's per-stream ingest queue (where
an overflowing core publish would be dropped silently). No ``Nats-Msg-Id``: a dedup entry per
sample would cost the server more than telemetry gains; consumers that care use ``seq``.

The latest sample of each robot is kept in memory and written to KV ``robots`` (key
``{tenant}.{robot_id}``) by a background task every ``robot_latest_flush_ms``, latest wins;
``GET .../latest`` and ``GET /v1/robots`` read the unwritten entries first, so a GET after a POST on the
same replica sees them, and KV otherwise (at most one flush interval behind on another replica). At most
``robot_latest_max_pending`` samples wait unwritten: a new robot's sample beyond that has the
oldest one written out at once. A tenant's distinct robots are capped by a
:class:`~services.gateway.robots.registry.RobotRegistry` before anything is published.

API keys are verified through a :class:`~services.common.auth.key_cache.KeyCache`: a KV read per
request would be about half the CPU of a single-sample POST.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import nats.errors
from nats.js.errors import KeyNotFoundError

from contracts.api.robots import JointSampleIn, utc_iso
from services.common.auth.apikeys import Principal
from services.common.http.problem import field_error
from services.common.nats.connection import cancel_and_wait, log_failure
from services.common.nats.round_trip import round_trip
from services.common.observability.metrics import EVENTS_PUBLISHED
from services.gateway.robots.registry import RobotRegistry
from services.gateway.state import GatewayState

log = logging.getLogger(__name__)
JOINTS_PUBLISHED = EVENTS_PUBLISHED.labels("robot.joints")
MAX_FIELD_ERRORS = 100
"""Most field errors one answer lists."""


class _ReceiptClock:
    """Now in UTC as RFC 3339 bytes to the millisecond, formatted at most once per millisecond."""

    def __init__(self) -> None:
        self._ms = -1
        self._text = b""

    def __call__(self) -> bytes:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            moment = datetime.fromtimestamp(ms / 1000, UTC)
            self._ms, self._text = ms, utc_iso(moment, timespec="milliseconds").encode()
        return self._text


receipt_time = _ReceiptClock()
"""The receipt time of a sample: its envelope's ``time`` and, when the client sent none, its ``ts``."""


class TelemetryUnavailableError(Exception):
    """NATS refused or did not confirm telemetry."""


class Telemetry:
    """Publishes samples and keeps each robot's latest one; one per app, run by the lifespan."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.settings = state.settings
        self.flush_s = state.settings.robot_latest_flush_ms / 1000
        self.max_pending = state.settings.robot_latest_max_pending
        self.unconfirmed = 0
        self.pending: dict[str, bytes] = {}
        self._flusher: asyncio.Task[None] | None = None
        settings = state.settings
        self.robots = RobotRegistry(
            state.kv.robots,
            settings.robot_max_per_tenant,
            settings.robot_admit_cache_max,
            settings.robot_admit_cache_s,
        )

    async def start(self) -> None:
        """Start the writer of the latest samples (unless writing through)."""
        if self.flush_s > 0:
            self._flusher = asyncio.create_task(self._flush_forever(), name="robots-latest-flusher")

    async def stop(self) -> None:
        """Stop the writer and write what is still pending."""
        if self._flusher is not None:
            await cancel_and_wait([self._flusher])
        await self.flush()

    async def principal(self, key: str) -> Principal | None:
        """The principal of API key ``key`` (cached), ``None`` for an invalid or revoked one."""
        return await self.state.key_cache.verify(key)

    async def admit(self, tenant: str, robot_id: str) -> None:
        """Return if the robot may publish; :class:`~services.gateway.robots.registry.RobotLimitError` if not."""
        await self.robots.admit(tenant, robot_id)

    async def publish(self, subject: str, payloads: Sequence[bytes], *, confirm: bool) -> None:
        """Publish ``payloads`` in order; with ``confirm`` (or when due) await one ack for all of them."""
        nc = self.state.nc
        last = len(payloads) - 1
        self.unconfirmed += len(payloads)
        JOINTS_PUBLISHED.inc(len(payloads))
        try:
            for index in range(last):
                await nc.publish(subject, payloads[index])
            if not confirm and self.unconfirmed < self.settings.robot_confirm_every:
                await nc.publish(subject, payloads[last])
                return
            self.unconfirmed = 0
            await self.state.js.publish(subject, payloads[last], timeout=self.settings.robot_confirm_timeout_s)
        except (nats.errors.Error, TimeoutError) as exc:
            raise TelemetryUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    async def confirm(self) -> None:
        """Wait until the NATS server has read everything published so far (a PING/PONG)."""
        timeout_s = self.settings.robot_confirm_timeout_s
        if not await round_trip(self.state.nc, timeout_s):
            raise TelemetryUnavailableError(f"NATS did not answer within {timeout_s:g} s")

    async def remember(self, key: str, data: bytes) -> None:
        """Make ``data`` the latest sample of ``key``: written by the flusher, or now when writing through.

        A new key when ``max_pending`` samples wait already has the oldest of them written out first.
        """
        if self.flush_s <= 0:
            await self.state.kv.robots.put(key, data)
            return
        evicted = None
        if key not in self.pending and len(self.pending) >= self.max_pending:
            evicted = next(iter(self.pending))
            evicted_data = self.pending.pop(evicted)
        self.pending[key] = data  # before any await, so that the bound holds across concurrent calls
        if evicted is not None:
            try:
                await self.state.kv.robots.put(evicted, evicted_data)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("latest joint angles of %s dropped, the map being full: %r", evicted, exc)

    def pending_of(self, tenant: str) -> dict[str, bytes]:
        """``tenant``'s latest samples not yet written to KV, by robot id (what a listing adds to KV's)."""
        prefix = f"{tenant}."
        return {key[len(prefix) :]: data for key, data in self.pending.items() if key.startswith(prefix)}

    async def latest(self, key: str) -> bytes | None:
        """The latest sample of ``key``: the one not yet written, else KV's."""
        data = self.pending.get(key)
        if data is not None:
            return data
        try:
            entry = await self.state.kv.robots.get(key)
        except KeyNotFoundError:
            return None
        return entry.value or None

    async def flush(self) -> None:
        """Write every pending latest sample to KV; a failed write stays pending for the next round."""
        batch = list(self.pending.items())
        if not batch:
            return
        kv = self.state.kv.robots
        results = await asyncio.gather(*(kv.put(key, value) for key, value in batch), return_exceptions=True)
        for (key, value), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("latest joint angles of %s not written: %r", key, result)
            elif self.pending.get(key) is value:
                del self.pending[key]

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - keep flushing whatever happens
                log_failure(log, exc, "flushing the latest joint angles failed")


def count_errors(
    samples: Sequence[JointSampleIn], joint_count: int, prefix: tuple[str | int, ...], *, indexed: bool
) -> list[dict[str, object]]:
    """A field error for each sample whose number of angles is not ``joint_count``.

    ``loc`` is ``prefix`` + (the sample's index, when ``indexed``) + ``joint_angles``.
    """
    errors = []
    for index, sample in enumerate(samples):
        if (got := len(sample.joint_angles)) != joint_count:
            loc = (*prefix, index, "joint_angles") if indexed else (*prefix, "joint_angles")
            errors.append(field_error(loc, f"expected {joint_count} joint angles, got {got}"))
            if len(errors) >= MAX_FIELD_ERRORS:
                break
    return errors
