"""Stored messages read from a stream by direct gets: a batch from any replica, or one from the leader.

:func:`direct_batch` sends one ``$JS.API.DIRECT.GET.{stream}`` request for up to ``count`` messages on a
subject from a sequence (``{"seq", "next_by_subj", "batch"}``; nats-py has no batch form) and gathers
the replies on an inbox of its own: the messages, in stream order, then a ``204 EOB`` status (a ``404``
alone when there is none). Any replica of the stream may answer, a lagging one with fewer than are
stored; what comes back is always a prefix of what the leader holds. :func:`leader_next` and
:func:`leader_last` are message gets through the JetStream API, which only the stream leader answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

API = "$JS.API"
NO_RESPONDERS = "503"


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored message: its stream sequence, subject, bytes and headers."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None

    @classmethod
    def of(cls, raw: RawStreamMsg) -> Stored:
        """The message a message get returned."""
        return cls(raw.seq or 0, raw.subject or "", raw.data or b"", raw.headers)


class NoDirectGets(Exception):
    """No replica answers direct gets on the stream: it lacks ``allow_direct``."""


async def direct_batch(
    nc: NatsClient, stream: str, subject: str, start: int, count: int, wait_s: float
) -> list[Stored]:
    """Up to ``count`` messages on ``subject`` (wildcards allowed) from sequence ``start``, as one replica
    holds them; ``[]`` when it holds none. What came within ``wait_s`` (a paused replica: nothing) is
    returned, always a prefix; :class:`NoDirectGets` when no replica answers direct gets at all."""
    got: list[Stored] = []
    ended = asyncio.Event()
    status: list[str] = []

    async def on_msg(msg: Msg) -> None:
        headers = msg.headers or {}
        if code := headers.get("Status"):
            status.append(code)  # 204 EOB after the messages, 404 when there were none
            ended.set()
        elif not ended.is_set():
            got.append(Stored(int(headers.get("Nats-Sequence", 0)), headers.get("Nats-Subject", ""), msg.data, headers))

    sub = await nc.subscribe(nc.new_inbox(), cb=on_msg)
    try:
        request = {"seq": start, "next_by_subj": subject, "batch": count}
        await nc.publish(f"{API}.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=sub.subject)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await ended.wait()
        batch = list(got)  # a prefix, whatever arrives later
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    if status[:1] == [NO_RESPONDERS]:
        raise NoDirectGets(stream)
    return batch


async def leader_next(js: JetStreamContext, stream: str, subject: str, start: int) -> Stored | None:
    """The first message on ``subject`` from sequence ``start`` as the stream leader holds it; ``None``: none."""
    try:
        return Stored.of(await js.get_msg(stream, seq=start, subject=subject, next=True))
    except NotFoundError:
        return None


async def leader_last(js: JetStreamContext, stream: str, subject: str) -> int:
    """The sequence of the last message on ``subject`` as the stream leader holds it; 0: none."""
    try:
        return (await js.get_msg(stream, subject=subject)).seq or 0
    except NotFoundError:
        return 0
