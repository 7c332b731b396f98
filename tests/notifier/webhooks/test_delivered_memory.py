"""A notifier's memory of the queue messages it delivered: by stream sequence and event id, bounded.

A message a consumer made again delivers anew (delivery count 1: its ack had not landed before the
consumer was deleted) is found in it, and acked, not sent again (``test_full_window``'s consumer-gone
test met that duplicate 1 run in 6 under load). A sequence the queue's stream reuses for another event
(the stream made again numbers from 1) is not taken for a delivered one.
"""

from __future__ import annotations

from services.notifier.webhooks.deliveries import DeliveredMemory


def test_a_delivered_message_is_known_by_its_sequence_and_event_and_the_oldest_go_first() -> None:
    memory = DeliveredMemory(2)
    memory.add(5, "evt-a")
    assert memory.delivered(5, "evt-a")
    assert not memory.delivered(5, "evt-b")  # the same sequence of a stream made again: another message
    assert not memory.delivered(6, "evt-a")
    memory.add(6, "evt-b")
    memory.add(7, "evt-c")
    assert not memory.delivered(5, "evt-a")  # bounded: the oldest went
    assert memory.delivered(6, "evt-b")
    assert memory.delivered(7, "evt-c")


def test_a_memory_of_size_0_keeps_nothing() -> None:
    memory = DeliveredMemory(0)
    memory.add(1, "evt-a")
    assert not memory.delivered(1, "evt-a")
