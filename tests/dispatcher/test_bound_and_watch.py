"""The start's last step, :func:`~services.dispatcher.subscribers.bound_and_watch`, across a stalled server.

A fresh clone's run failed a dispatcher's start on it: the consumer info of ``dispatcher-uploads`` went
unanswered for 5 s under load, and the start raised where its other steps try again.
"""

from __future__ import annotations

from pathlib import Path

from nats.js.api import AckPolicy, ConsumerConfig

from contracts.streams import JOBS, declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.declarations import apply_declarations
from services.dispatcher.consumers import ConsumerGuard, Redelivery
from services.dispatcher.subscribers import Consumer, bound_and_watch
from tests.support.stopping import stallable_server, through_a_stall

MAX_DELIVER = 7


async def test_the_redeliveries_bound_while_the_server_stalls_are_bound_once_it_answers(tmp_path: Path) -> None:
    """An older consumer (no ``max_deliver``) gets its bound after a stall that times its info out."""
    async with stallable_server(tmp_path / "nats") as (pid, js):
        ns = Namespace("stall")
        subjects = Subjects(ns)
        await apply_declarations(js, declarations(ns, frames_max_bytes=1 << 20))
        stream = ns.stream(JOBS)
        older = ConsumerConfig(durable_name="dispatcher-uploads", filter_subject=ns.subject("uploads.>"),
                               ack_policy=AckPolicy.EXPLICIT)  # fmt: skip
        await js.add_consumer(stream, older)
        consumer = Consumer(stream, "dispatcher-uploads", Redelivery(MAX_DELIVER, 0.1, 0.1))
        guard = ConsumerGuard(js, subjects)
        watching = await through_a_stall(pid, lambda: bound_and_watch(js._nc, js, guard, [consumer]))
        assert len(watching) == 1  # its advisories watched
        assert (await js.consumer_info(stream, "dispatcher-uploads")).config.max_deliver == MAX_DELIVER
