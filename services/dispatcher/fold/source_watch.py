"""``JOBS_FOLD``'s source from JOBS, restarted when it stalls after a leader change.

nats-server copies JOBS into ``JOBS_FOLD`` through a consumer that ``JOBS_FOLD``'s leader makes on
JOBS. When making it fails (JOBS or ``JOBS_FOLD`` electing a leader after a fault) it tries again
after 10 s, then 20, 30, … up to 2 minutes (``calculateRetryBackoff`` in nats-server's
``server/stream.go``), and meanwhile no event reaches the fold. With the node that led both streams
paused for 15 s, nothing was sourced for 46 s. In the fault suite, records stayed behind their stream
for about 30 s after a partition and after a pause, until the fold audit rewrote them. A new leader
makes the source's consumer at once, so :class:`SourceWatch` asks ``JOBS_FOLD``'s leader to step down
once the source has been silent for :data:`STALLED_AFTER_S`. A healthy source sends a message or a
1 s heartbeat (its ``active``); a new leader's source starts at -1, never heard.

The watch looks only after a leader election of JOBS or ``JOBS_FOLD``, which their advisories
announce (a source stalls on those), and at start. It then asks for ``JOBS_FOLD``'s info once every
:data:`CHECK_EVERY_S` for :data:`WATCH_FOR_S`. At rest it sends nothing (issue 34: no INFO polling). It
asks for at most one step-down every :data:`STEP_DOWN_EVERY_S`, and only while JOBS has a leader (a new
``JOBS_FOLD`` leader's first try would fail without one, and back off). Every replica watches. Before
asking, a replica looks again a random moment later (up to a check) and asks only if the same leader
still has not heard from its source, so one replica's step-down usually serves all of them; two close
together cost one more election.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from services.common.nats.connection import cancel_and_wait

log = logging.getLogger(__name__)
CHECK_EVERY_S = 1.0
WATCH_FOR_S = 90.0
"""How long after an election the source is looked at (nats-server's own retries are 10, 20, 30 s apart)."""
STALLED_AFTER_S = 3.0
"""Three missed heartbeats of a source (or a new leader's source not heard for as long)."""
STEP_DOWN_EVERY_S = 10.0
NANOS = 1_000_000_000


def leader_elected(stream: str) -> str:
    """The advisory subject of ``stream``'s leader elections."""
    return f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{stream}"


@dataclass
class SourceWatch:
    """Steps ``fold_stream``'s leader down when its source (``source_stream``) stalls after an election."""

    nc: NatsClient
    fold_stream: str
    source_stream: str
    check_every_s: float = CHECK_EVERY_S
    watch_for_s: float = WATCH_FOR_S
    stalled_after_s: float = STALLED_AFTER_S
    step_down_every_s: float = STEP_DOWN_EVERY_S
    step_downs: int = 0
    """Step-downs this watch asked for."""
    _until: float = 0.0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _subscriptions: list[Any] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Hear both streams' elections, and look for a while now (a start may follow a fault)."""
        for stream in (self.fold_stream, self.source_stream):
            self._subscriptions.append(await self.nc.subscribe(leader_elected(stream), cb=self._elected))
        self.look()
        self._task = asyncio.create_task(self._run(), name="fold-source-watch")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):  # a closed connection has none left
                await subscription.unsubscribe()

    def look(self) -> None:
        """Look at the source for the next ``watch_for_s``."""
        self._until = time.monotonic() + self.watch_for_s
        self._wake.set()

    async def _elected(self, msg: Msg) -> None:
        self.look()

    async def _run(self) -> None:
        never_heard_since: float | None = None
        stepped_down_at = -self.step_down_every_s
        while True:
            if time.monotonic() >= self._until:
                self._wake.clear()
                await self._wake.wait()
                never_heard_since = None
            try:
                active_ns, leader = await self._source()
            except Exception as exc:  # noqa: BLE001 - NATS away: looked at again at the next check
                log.debug("the fold's source could not be looked at: %s", exc)
                active_ns, leader = None, None
            now = time.monotonic()
            silent_s = 0.0
            if active_ns is not None and active_ns < 0:
                never_heard_since = never_heard_since or now
                silent_s = now - never_heard_since
            elif active_ns is not None:
                never_heard_since, silent_s = None, active_ns / NANOS
            due = silent_s >= self.stalled_after_s and now - stepped_down_at >= self.step_down_every_s
            if due and await self._still_stalled(leader):
                stepped_down_at = time.monotonic()
                await self._step_down(silent_s)
            await asyncio.sleep(self.check_every_s)

    async def _source(self) -> tuple[int | None, str | None]:
        """How long ago the source was last heard, in nanoseconds (-1: never; ``None`` with no source), and
        the fold stream's leader."""
        info = await self.nc.jetstream(timeout=self.check_every_s * 2).stream_info(self.fold_stream)
        leader = info.cluster.leader if info.cluster is not None else None
        sources = info.sources or []
        if not sources:
            return None, leader
        active = sources[0].active
        return (-1 if active is None else int(active)), leader

    async def _still_stalled(self, leader: str | None) -> bool:
        """Whether, a random moment later, the same leader still has not heard from its source (every replica
        watches, and the first one's step-down is enough: the new leader's source is heard within a second),
        and the source stream has a leader (a new fold leader's first try would fail, and back off, without)."""
        await asyncio.sleep(random.uniform(0.0, self.check_every_s))  # a spread, not a secret
        try:
            active_ns, now_leader = await self._source()
            source = await self.nc.jetstream(timeout=self.check_every_s * 2).stream_info(self.source_stream)
        except Exception:  # noqa: BLE001 - not known: not asked this time
            return False
        heard = active_ns is not None and 0 <= active_ns < self.stalled_after_s * NANOS
        led = source.cluster is None or bool(source.cluster.leader)
        return now_leader == leader and not heard and led

    async def _step_down(self, silent_s: float) -> None:
        log.warning("%s has not heard from its source %s for %.1f s; its leader is asked to step down, so that "
                    "a new one sources again at once", self.fold_stream, self.source_stream, silent_s)  # fmt: skip
        try:
            reply = await self.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{self.fold_stream}", b"", timeout=5.0)
        except Exception as exc:  # noqa: BLE001 - asked again after STEP_DOWN_EVERY_S if still stalled
            log.warning("%s: the step-down was not answered (%s)", self.fold_stream, exc)
            return
        answer = json.loads(reply.data or b"{}")
        if answer.get("success"):
            self.step_downs += 1
        else:
            log.warning("%s: the step-down was refused: %s", self.fold_stream, answer.get("error"))
