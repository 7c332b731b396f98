"""The clients of a fault run, each operation recorded in a :class:`~tests.support.netns.history.History`.

* :meth:`Clients.steady`: ``pose`` jobs submitted at a steady rate, each with an ``Idempotency-Key``
  and sent again with it on no answer, a 5xx, a 409 or 429 (at most :data:`SUBMIT_FOR_S`): ``ok`` on
  201/200, ``fail`` on another 4xx, ``unknown`` if none came; each acknowledged job gets an
  :class:`SseFollower`;
* every :data:`CANCEL_EVERY`-th acknowledged job is canceled (``POST /v1/jobs/{id}/cancel``, 202 or 409
  once it ended) up to :data:`CANCEL_WITHIN_S` after its 201: before it runs, while it runs or as it
  ends, so a cancel racing a run's end meets every fault (the job still ends exactly once);
* :class:`SseFollower`: the job's SSE stream to its terminal event, reopened with ``Last-Event-ID``
  on the *other* notifier whenever it breaks or goes quiet (a load balancer's view);
* :mod:`tests.support.netns.sessions`: live sessions streaming frames and joints.

Every request has a :data:`REQUEST_TIMEOUT_S` timeout (Jepsen's clients use 5 s); every loop is
bounded in time; at most :data:`IN_FLIGHT` submissions are in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from typing import Any

import httpx
from gpurelay_client import TERMINAL_EVENTS, AsyncClient, GpurelayError

from bench.harness.fault_clients import JOB
from tests.support.netns.history import History, Op

REQUEST_TIMEOUT_S = 5.0
SUBMIT_FOR_S = 20.0
RETRY_S = 0.3
RETRIED = frozenset({409, 429})
"""409: the ``Idempotency-Key`` is contended; 429: too many requests."""
IN_FLIGHT = 64
FOLLOW_FOR_S = 240.0
IDLE_S = 8.0
"""An SSE stream with no event for this long is reopened on the other notifier."""
CANCEL_EVERY = 4
CANCEL_WITHIN_S = 1.0
"""A canceled job's cancel comes this long after its 201 at most (a job of the suite runs ~0.5 s)."""


class Clients:
    """Clients of one deployment (the gateway, the notifiers), as API key ``key``."""

    def __init__(self, history: History, gateway: str, notifiers: list[str], key: str) -> None:
        self.history, self.gateway, self.notifiers, self.key = history, gateway, notifiers, key
        self.headers = {"Authorization": f"Bearer {key}"}
        self.http = httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, headers=self.headers)
        self.followers: dict[str, SseFollower] = {}
        self.acknowledged = 0
        self.pending: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(IN_FLIGHT)

    async def close(self) -> None:
        """Cancel what is still running; close the HTTP client."""
        for task in [*self.pending, *(f.task for f in self.followers.values())]:
            task.cancel()
        await asyncio.gather(*self.pending, *(f.task for f in self.followers.values()), return_exceptions=True)
        await self.http.aclose()

    async def call(self, op: Op, method: str, path: str, ok: set[int], body: Any = None,
                   headers: dict[str, str] | None = None, retry_for_s: float = 0.0,
                   retried: frozenset[int] = RETRIED) -> httpx.Response | None:  # fmt: skip
        """Send a request for ``op`` (again, same headers, while unanswered, a 5xx or a status in ``retried``,
        for at most ``retry_for_s``) and complete ``op``: ``ok`` on a status in ``ok``, ``fail`` on another
        4xx, else ``unknown``. The last answer, if any."""
        deadline = time.monotonic() + retry_for_s
        answer: httpx.Response | None = None
        while True:
            try:
                sent = {"content": body} if isinstance(body, bytes) else {"json": body}
                answer = await self.http.request(method, f"{self.gateway}{path}", headers=headers, **sent)
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code in ok:
                self.history.complete(op, "ok", answer.json())
                return answer
            if answer is not None and answer.status_code < 500 and answer.status_code not in retried:
                self.history.complete(op, "fail", f"{answer.status_code} {answer.text[:200]}")
                return answer
            if time.monotonic() + RETRY_S > deadline:
                self.history.complete(op, "unknown", answer.status_code if answer is not None else "no answer")
                return answer
            await asyncio.sleep(RETRY_S)

    async def submit(self) -> None:
        """Submit one job; follow its events over SSE once acknowledged."""
        idempotency = uuid.uuid4().hex
        op = self.history.invoke("submitter", "submit", idempotency)
        await self.call(op, "POST", "/v1/jobs", {200, 201}, JOB, {"Idempotency-Key": idempotency}, SUBMIT_FOR_S)
        if op.outcome == "ok":
            job_id = op.value = str(op.value["id"])
            self.followers[job_id] = SseFollower(job_id, self.notifiers, self.key)
            self.acknowledged += 1
            if self.acknowledged % CANCEL_EVERY == 0:
                await self.cancel(job_id, random.Random(job_id).uniform(0, CANCEL_WITHIN_S))

    async def cancel(self, job_id: str, after_s: float) -> None:
        """Cancel ``job_id`` ``after_s`` from now (again on no answer or a 5xx): ``ok`` on 202, or 409 when
        it ended first."""
        await asyncio.sleep(after_s)
        op = self.history.invoke("canceler", "cancel", job_id)
        await self.call(op, "POST", f"/v1/jobs/{job_id}/cancel", {202, 409}, None, retry_for_s=SUBMIT_FOR_S)

    async def steady(self, rate: float, stop: asyncio.Event) -> int:
        """Submit ``rate`` jobs a second (each in its own task) until ``stop`` is set; how many were offered."""
        offered, began = 0, time.monotonic()
        while not stop.is_set():
            await self._slots.acquire()
            task = asyncio.create_task(self.submit())
            task.add_done_callback(lambda t: (self.pending.discard(t), self._slots.release()))
            self.pending.add(task)
            offered += 1
            next_at = began + offered / rate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        return offered

    async def drain(self) -> None:
        """Wait until every submission has completed."""
        await asyncio.gather(*list(self.pending), return_exceptions=True)


class SseFollower:
    """One job's SSE stream to its terminal event (the Python client's ``jobs.stream``, one opening at a time:
    no reconnection of its own), resumed with ``Last-Event-ID`` on the next notifier."""

    def __init__(self, job_id: str, notifiers: list[str], key: str) -> None:
        self.job_id, self.notifiers, self.key = job_id, notifiers, key
        self.seqs: list[int] = []
        self.types: list[str] = []
        self.connections = 0
        """Streams opened that delivered events: 1 + the resumptions."""
        self.task = asyncio.create_task(self._follow(), name=f"sse:{job_id}")

    @property
    def done(self) -> bool:
        """Whether it read the terminal event."""
        return bool(self.types) and self.types[-1] in TERMINAL_EVENTS

    async def _follow(self) -> None:
        deadline, turn, last = time.monotonic() + FOLLOW_FOR_S, 0, None
        loop = asyncio.get_running_loop()
        while not self.done:
            notifier, read = self.notifiers[turn % len(self.notifiers)], len(self.seqs)
            try:
                async with (
                    AsyncClient(notifier, api_key=self.key, timeout=REQUEST_TIMEOUT_S, stream_max_reconnects=0) as api,
                    asyncio.timeout(IDLE_S) as idle,
                ):
                    async for event in api.jobs.stream(self.job_id, after=last):
                        idle.reschedule(loop.time() + IDLE_S)
                        self.seqs.append(int(event.id or 0))
                        self.types.append(event.type)
                        last = event.id
            except (GpurelayError, TimeoutError):
                turn += 1
            self.connections += len(self.seqs) > read
            if not self.done:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.job_id}: no terminal event over SSE in {FOLLOW_FOR_S} s")
                await asyncio.sleep(RETRY_S)
