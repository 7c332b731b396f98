"""Claims left by a ticket that is gone: found and let go, so the attempt gets a ticket again.

A queue entry is claimed by one dispatch ticket (``claimed_by``: its DISPATCH sequence), and the
ticket's holder deletes the entry before it acks the ticket. DISPATCH is a work queue: an acked (or
dead-lettered) ticket leaves the stream. So an entry still claimed by a sequence DISPATCH no longer
holds has no holder, and never will: no ticket comes back for it, and the top-up
(:meth:`~services.dispatcher.scheduling.scheduler.Scheduler.top_up`) gives tickets to unclaimed entries
only. Left so, its job would stay ``queued`` for ever (a ``-m netfaults`` run saw one after a 15 s pause).

:class:`StaleClaims` looks, every ``claim_check_interval_s``, at each claim this replica's mirror has
shown for ``claim_check_after_s`` and none of its own attempts holds: one ``STREAM.MSG.GET`` on
DISPATCH. A claim found held is looked at again after twice as long each time, up to
:data:`RECHECK_MAX_S` (a long run, a live session: a message every 10 minutes at most). A claim whose
ticket is gone is written
back unclaimed by compare-and-set on the revision seen (a claim made meanwhile stands), logged and
counted; the top-up then gives it a ticket. Were its attempt launched after all, the new holder finds
its ``job.dispatched`` stored and supervises that run instead of starting another. An idle stack, or
one whose attempts end within ``claim_check_after_s``, asks nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.dispatcher.scheduling.queue import QueueIndex

log = logging.getLogger(__name__)
RECHECK_MAX_S = 600.0
"""The longest wait between two looks at one claim."""


class StaleClaims:
    """Lets go of queue entries claimed by a ticket DISPATCH no longer holds."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        queue: QueueIndex,
        holding: Callable[[], Collection[str]],
        after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.js, self.stream, self.queue, self.holding, self.after_s = js, stream, queue, holding, after_s
        self.clock = clock
        self.due: dict[tuple[str, int], tuple[float, float]] = {}
        """When each claim the mirror shows, (entry key, ticket sequence), is next looked at (monotonic),
        and the wait before the look after that."""
        self.released = 0

    async def sweep(self) -> list[str]:
        """Look at the claims that are due; the keys of the entries let go."""
        now = self.clock()
        claims = {(e.key, seq): e for e in self.queue.running() if (seq := e.claimed_by) is not None}
        for claim in [c for c in self.due if c not in claims]:
            del self.due[claim]
        mine, released = set(self.holding()), []
        for (key, seq), entry in claims.items():
            due, wait = self.due.setdefault((key, seq), (now + self.after_s, self.after_s))
            if key in mine or now < due:
                continue
            wait = min(RECHECK_MAX_S, 2 * wait)
            self.due[key, seq] = (now + wait, wait)
            try:
                await self.js.get_msg(self.stream, seq)
                continue  # its ticket is there: held, or to be redelivered
            except NotFoundError:
                pass
            revision = self.queue.revision(key)
            if revision is not None and await self.queue.unclaim(entry, revision):
                self.released += 1
                released.append(key)
                log.warning(
                    "queue entry %s was claimed by ticket %d, which %s no longer holds; let go, to get a ticket again",
                    key, seq, self.stream, extra={"job_id": entry.job_id, "attempt": entry.attempt},
                )  # fmt: skip
        return released
