"""``gpurelay replay``: read a stream from a sequence or a time, filtered by subject, as JSON lines.

An ordered consumer (ephemeral, in memory, no acks, flow-controlled, reset by the client on a gap)
reads the namespaced stream from ``--from SEQ`` or ``--since TIME`` (default: the beginning). Each
message becomes one line ``{"seq", "subject", "time", "event"}`` on stdout, where ``subject`` is
relative to the namespace and ``event`` is the envelope (or the raw text when it is not JSON).
It stops once caught up (no message pending) unless ``--follow``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from rich.console import Console

from services.cli.client import cli_settings
from services.common.config import BaseServiceSettings
from services.common.nats import connect

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
IDLE_S = 0.5
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``10m``, ``2h``, ``30s``, ``1d`` (ago), or an ISO 8601 time (UTC when it names no zone)."""
    if match := _RELATIVE.fullmatch(value.strip()):
        amount, unit = float(match.group(1)), _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither ISO 8601 nor a duration like 10m or 2h") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def consumer_config(start_seq: int | None, since: datetime | None) -> ConsumerConfig:
    """Where the ordered consumer starts: a sequence, a time, or the beginning."""
    if start_seq is not None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
    if since is not None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)


def stored_time(msg: Msg) -> datetime:
    """When the stream stored ``msg``, truncated to the microsecond (metadata's float rounds)."""
    try:
        tokens = msg._get_metadata_fields(msg.reply)
        nanos = int(tokens[7] if len(tokens) == 9 else tokens[Msg.Ack.Timestamp])
    except (ValueError, IndexError, TypeError):
        return msg.metadata.timestamp
    return EPOCH + timedelta(microseconds=nanos // 1000)


def line(msg: Msg, settings: BaseServiceSettings) -> dict[str, Any]:
    """One output line: stream sequence, subject (without the namespace), stored time, event."""
    meta = msg.metadata
    text = msg.data.decode("utf-8", errors="replace")
    try:
        event: Any = json.loads(text)
    except ValueError:
        event = text
    return {
        "seq": meta.sequence.stream,
        "subject": settings.ns.strip(msg.subject),
        "time": stored_time(msg).isoformat().replace("+00:00", "Z"),
        "event": event,
    }


async def replay_stream(
    settings: BaseServiceSettings,
    stream: str,
    subject: str | None,
    config: ConsumerConfig,
    *,
    follow: bool,
    emit: Callable[[dict[str, Any]], None],
) -> int:
    """Emit every matching message; returns how many. Ends when caught up unless ``follow``.

    Messages stored before ``config.opt_start_time`` are skipped here too: nats-server delivers
    from the first message when the start time lies after the last one.
    """
    since = config.opt_start_time
    nc = await connect(settings, "cli-replay")
    count = 0
    try:
        js = nc.jetstream()
        name = settings.ns.stream(stream)
        wanted = settings.ns.subject(subject) if subject else ""
        try:
            sub = await js.subscribe(wanted, stream=name, ordered_consumer=True, config=config)
        except NotFoundError:
            raise typer.BadParameter(f"no stream {name}", param_hint="--stream") from None
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=IDLE_S)
                except NatsTimeoutError:
                    if not follow and sub.pending_msgs == 0 and (await sub.consumer_info()).num_pending == 0:
                        return count
                    continue
                if since is None or stored_time(msg) >= since:  # the server may start early
                    emit(line(msg, settings))
                    count += 1
                if not follow and msg.metadata.num_pending == 0:
                    return count
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()


def replay(
    subject: Annotated[
        str | None, typer.Option("--subject", help="Subject filter without the namespace, e.g. 'jobs.acme.>'.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Start at this time: ISO 8601, or 10m / 2h / 1d ago.")] = None,
    from_seq: Annotated[int | None, typer.Option("--from", min=1, help="Start at this stream sequence.")] = None,
    stream: Annotated[str, typer.Option(help="The stream (JOBS, TELEMETRY, FRAMES, DEADLETTER).")] = "JOBS",
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep reading new messages.")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Read dev.env from this data dir.")] = None,
) -> None:
    """Replay a stream as JSON lines on stdout: from a sequence or a time, filtered by subject."""
    if since is not None and from_seq is not None:
        raise typer.BadParameter("give --since or --from, not both", param_hint="--since")
    config = consumer_config(from_seq, parse_since(since) if since is not None else None)
    settings = cli_settings(data_dir)

    def emit(item: dict[str, Any]) -> None:
        typer.echo(json.dumps(item, separators=(",", ":")))

    try:
        count = asyncio.run(replay_stream(settings, stream, subject, config, follow=follow, emit=emit))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    Console(stderr=True).print(f"[dim]{count} messages[/]")
