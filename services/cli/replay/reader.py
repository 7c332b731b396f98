"""``gpurelay replay``: read a stream from a sequence or a time, filtered by subject, to a target.

An ordered consumer (ephemeral, in memory, no acks, flow-controlled, reset by the client on a gap)
reads the namespaced stream from ``--from SEQ`` or ``--since TIME`` (default: the beginning),
filtered by ``--subject`` (namespace-relative), and stops at ``--until`` (a sequence or a time),
after ``--limit`` messages, or once it reaches the last message stored when it began (so a replay
into its own stream ends), unless ``--follow`` (stdout only). The targets
(:mod:`services.cli.replay.targets`): stdout (JSON lines, the default), ``--to-subject``,
``--to-webhook``; ``--dry-run`` only counts. A progress bar runs on stderr; other targets print a
JSON summary on stdout. ``--rebuild jobs`` folds JOBS into a fresh projection instead
(:mod:`services.cli.replay.rebuild`).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts.streams import JOBS
from contracts.subjects import stored_subject
from services.cli.client import nats_connection
from services.cli.replay.progress import replay_progress
from services.cli.replay.targets import Tally, Target, line, stored_time
from services.common.config import BaseServiceSettings
from services.common.nats.kv import seq_before
from services.common.nats.quiet_watch import renew_on_reconnect

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
IDLE_S = 0.5
BEHIND_S = 30.0
"""How long a read waits for a consumer on a lagging replica to deliver what the stream's leader holds."""
__all__ = ["consumer_config", "line", "parse_since", "parse_until", "replay_stream", "stored_time"]


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``10m``, ``2h``, ``30s``, ``1d`` (ago), or an ISO 8601 time (UTC when it names no zone)."""
    if match := _RELATIVE.fullmatch(value.strip()):
        amount, unit = float(match.group(1)), _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither ISO 8601 nor a duration like 10m or 2h", param_hint="--since"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Bounds:
    """Where a replay stops: after sequence ``seq``, after time ``time``, after ``limit`` messages."""

    seq: int | None = None
    time: datetime | None = None
    limit: int | None = None

    def past(self, msg: Msg) -> bool:
        """Whether ``msg`` lies beyond ``--until``."""
        if self.seq is not None and msg.metadata.sequence.stream > self.seq:
            return True
        return self.time is not None and stored_time(msg) > self.time


def parse_until(value: str | None, limit: int | None = None) -> Bounds:
    """``--until``: a stream sequence (digits, inclusive) or a time as ``--since`` takes it (inclusive)."""
    if value is None:
        return Bounds(limit=limit)
    if value.strip().isdigit():
        return Bounds(seq=int(value), limit=limit)
    try:
        return Bounds(time=parse_since(value), limit=limit)
    except typer.BadParameter:
        raise typer.BadParameter(
            f"{value!r} is neither a stream sequence (digits), ISO 8601 nor a duration like 10m or 2h",
            param_hint="--until",
        ) from None


def consumer_config(start_seq: int | None, since: datetime | None) -> ConsumerConfig:
    """Where the ordered consumer starts: a sequence, a time, or the beginning."""
    if start_seq is not None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
    if since is not None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)


async def read_range(
    nc: NatsClient,
    settings: BaseServiceSettings,
    stream: str,
    subject: str | None,
    config: ConsumerConfig,
    bounds: Bounds = Bounds(),
    *,
    follow: bool = False,
    on_start: Callable[[int], None] = lambda _: None,
) -> AsyncIterator[Msg]:
    """Every message in range, in stream order; ``on_start`` gets how many may come (at most).

    A start time is read as the sequence before the first message stored since it
    (:func:`~services.common.nats.kv.seq_before`): the consumer starts at a sequence, which nats-py can
    make again after a gap (not a time), and nothing before it is yielded (a consumer made again before
    its first message starts over at the stream's first).
    """
    js, name = nc.jetstream(), settings.ns.stream(stream)
    try:
        last = (await js.stream_info(name)).state.last_seq
    except NotFoundError:
        raise typer.BadParameter(f"no stream {name}", param_hint="--stream") from None
    wanted = settings.ns.subject(subject) if subject else ""
    if wanted and stream == JOBS:  # one job event named as published: as JOBS stores it (its slot token)
        wanted = stored_subject(settings.ns, wanted)
    since, count, first = config.opt_start_time, 0, config.opt_start_seq or 0
    if config.deliver_policy == DeliverPolicy.BY_START_TIME and since is not None:
        first = await seq_before(js, name, since, wanted or None) + 1
        config = replace(
            config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first, opt_start_time=None
        )
    end = await last_wanted(js, name, wanted, last)
    if not follow and end < first:
        return
    sub = renew_on_reconnect(await js.subscribe(wanted, stream=name, ordered_consumer=True, config=config))
    try:
        info = await sub.consumer_info()  # a fresh consumer: what it delivered already plus what is left
        pending = (info.delivered.consumer_seq if info.delivered else 0) + (info.num_pending or 0)
        on_start(min(pending, bounds.limit) if bounds.limit is not None else pending)
        seen, behind_since = 0, time.monotonic()
        while bounds.limit is None or count < bounds.limit:
            try:
                msg = await sub.next_msg(timeout=IDLE_S)
            except NatsTimeoutError:
                if not follow and sub.pending_msgs == 0 and (await sub.consumer_info()).num_pending == 0:
                    if seen >= end or not await still_stored(js, name, end):
                        return  # read to its end, or the rest was deleted meanwhile
                    if time.monotonic() - behind_since > BEHIND_S:
                        stuck = f"{name}: the reading consumer's replica stopped at {seen} of {end}"
                        raise TimeoutError(stuck) from None
                continue
            seq, behind_since = msg.metadata.sequence.stream, time.monotonic()
            if seq < first:
                continue
            seen = seq
            if (not follow and seq > last) or bounds.past(msg):
                return
            if since is None or stored_time(msg) >= since:  # the server may start early
                count += 1
                yield msg
            if not follow and seq >= end:
                return
    finally:
        await sub.unsubscribe()


async def last_wanted(js: JetStreamContext, name: str, wanted: str, last: int) -> int:
    """The last sequence a read to ``last`` wants, as the stream's leader holds it: the last message on
    ``wanted`` (0: none). The read's consumer may sit on a replica still catching up (a node back from
    a partition), whose pending count says 0 before that end; the read waits for it instead."""
    if not wanted:
        return last
    try:
        return min((await js.get_last_msg(name, wanted)).seq or 0, last)
    except NotFoundError:
        return 0


async def still_stored(js: JetStreamContext, name: str, seq: int) -> bool:
    """Whether the stream's leader still holds message ``seq`` (not deleted, aged out or purged)."""
    try:
        await js.get_msg(name, seq)
    except NotFoundError:
        return False
    return True


async def replay_stream(
    settings: BaseServiceSettings,
    stream: str,
    subject: str | None,
    config: ConsumerConfig,
    *,
    follow: bool,
    emit: Callable[[dict[str, Any]], None],
    bounds: Bounds = Bounds(),
) -> int:
    """Emit every matching message as a line; returns how many. Ends when caught up unless ``follow``."""
    nc = await nats_connection(settings, "cli-replay")
    count = 0
    try:
        async for msg in read_range(nc, settings, stream, subject, config, bounds, follow=follow):
            emit(line(msg, settings))
            count += 1
    finally:
        await nc.close()
    return count


async def replay_to(
    nc: NatsClient,
    settings: BaseServiceSettings,
    target: Target,
    selection: tuple[str, str | None, ConsumerConfig, Bounds],
    *,
    dry_run: bool,
    follow: bool = False,
) -> Tally:
    """Send every message in range to ``target`` (only count them with ``dry_run``), with a progress bar."""
    stream, subject, config, bounds = selection
    tally = Tally()
    with replay_progress(f"{'counting' if dry_run else 'replaying'} to {target.name}") as progress:
        async for msg in read_range(
            nc, settings, stream, subject, config, bounds, follow=follow, on_start=progress.total
        ):
            tally.matched += 1
            progress.advance()
            if reason := target.skip(msg):
                tally.skipped[reason] += 1
            elif not dry_run:
                outcome = await target.send(msg)
                tally.sent += outcome == "sent"
                tally.duplicates += outcome == "duplicate"
                tally.refused += outcome == "refused"
    if not dry_run and tally.sent:
        await target.finish()
    return tally
