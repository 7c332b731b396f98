"""The VLM chunker: closing by count and by time, even sampling, coalescing when behind, bounded memory."""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modal_workers.vlm.chunker import Chunk, Chunker, Frame, sample_evenly


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frames(start: int, count: int) -> list[Frame]:
    return [Frame(seq, ts=seq / 30, data=b"f%d" % seq) for seq in range(start, start + count)]


def feed(chunker: Chunker, items: list[Frame]) -> None:
    for frame in items:
        chunker.add(frame)


def seqs(chunk: Chunk) -> list[int]:
    return [frame.seq for frame in chunk.frames]


def test_a_chunk_closes_at_chunk_frames() -> None:
    chunker = Chunker(chunk_frames=4, chunk_seconds=60, max_images=4, clock=Clock())
    feed(chunker, frames(0, 3))
    assert chunker.take() is None
    chunker.add(Frame(3, 0.1, b"x"))
    chunk = chunker.take()
    assert chunk is not None
    assert (chunk.index, seqs(chunk), chunk.first_seq, chunk.last_seq, chunk.covered) == (0, [0, 1, 2, 3], 0, 3, 4)
    assert chunker.take() is None
    feed(chunker, frames(4, 4))
    second = chunker.take()
    assert second is not None
    assert (second.index, second.first_seq, second.last_seq, second.coalesced) == (1, 4, 7, False)


def test_a_chunk_closes_chunk_seconds_after_its_first_frame() -> None:
    clock = Clock()
    chunker = Chunker(chunk_frames=100, chunk_seconds=2.0, max_images=8, clock=clock)
    assert chunker.seconds_to_deadline() is None
    clock.now += 50  # idle time before the first frame does not count
    feed(chunker, frames(0, 2))
    clock.now += 1.5
    chunker.add(Frame(2, 0.0, b"x"))
    assert chunker.seconds_to_deadline() == pytest.approx(0.5)
    assert chunker.take() is None
    clock.now += 0.5
    assert chunker.seconds_to_deadline() == 0.0
    chunk = chunker.take()  # closed by time with no new frame
    assert chunk is not None
    assert (seqs(chunk), chunk.closed_at) == ([0, 1, 2], clock.now)
    assert chunker.seconds_to_deadline() is None


def test_a_frame_after_the_deadline_opens_the_next_chunk() -> None:
    clock = Clock()
    chunker = Chunker(chunk_frames=100, chunk_seconds=1.0, max_images=8, clock=clock)
    feed(chunker, frames(0, 2))
    clock.now += 1.2
    chunker.add(Frame(2, 0.0, b"x"))
    first = chunker.take()
    assert first is not None
    assert seqs(first) == [0, 1]
    assert chunker.seconds_to_deadline() == pytest.approx(1.0)


def test_flush_closes_a_partial_window() -> None:
    chunker = Chunker(chunk_frames=8, chunk_seconds=60, max_images=8, clock=Clock())
    chunker.flush()
    assert chunker.take() is None
    feed(chunker, frames(0, 3))
    chunker.flush()
    chunk = chunker.take()
    assert chunk is not None
    assert seqs(chunk) == [0, 1, 2]


@pytest.mark.parametrize(
    ("n", "count", "expected"),
    [
        (10, 4, [0, 3, 6, 9]),
        (9, 3, [0, 4, 8]),
        (8, 2, [0, 7]),
        (8, 1, [7]),
        (3, 5, [0, 1, 2]),
        (64, 16, [0, 4, 8, 13, 17, 21, 25, 29, 34, 38, 42, 46, 50, 55, 59, 63]),
    ],
)
def test_sampling_is_even_and_keeps_the_first_and_last(n: int, count: int, expected: list[int]) -> None:
    assert sample_evenly(list(range(n)), count) == expected


def test_a_chunk_shows_the_model_at_most_max_images_frames_but_spans_them_all() -> None:
    chunker = Chunker(chunk_frames=9, chunk_seconds=60, max_images=3, clock=Clock())
    feed(chunker, frames(10, 9))
    chunk = chunker.take()
    assert chunk is not None
    assert (seqs(chunk), chunk.first_seq, chunk.last_seq, chunk.covered) == ([10, 14, 18], 10, 18, 9)


def test_when_behind_pending_frames_coalesce_keeping_the_newest() -> None:
    chunker = Chunker(chunk_frames=4, chunk_seconds=60, max_images=4, max_pending_frames=6, clock=Clock())
    feed(chunker, frames(0, 4))  # chunk 0 closes; the worker is busy and does not take it
    feed(chunker, frames(4, 4))  # chunk 1 closes: merged with chunk 0, the 6 newest kept
    assert chunker.frames_dropped == 2
    feed(chunker, frames(8, 4))
    assert chunker.frames_dropped == 6
    chunk = chunker.take()
    assert chunk is not None
    assert (chunk.first_seq, chunk.last_seq, chunk.covered, chunk.coalesced) == (6, 11, 6, True)
    assert seqs(chunk) == [6, 8, 9, 11]
    feed(chunker, frames(12, 4))
    caught_up = chunker.take()
    assert caught_up is not None
    assert (caught_up.first_seq, caught_up.coalesced, chunker.frames_dropped) == (12, False, 6)


def test_memory_stays_bounded_however_far_behind() -> None:
    chunker = Chunker(chunk_frames=8, chunk_seconds=60, max_images=4, clock=Clock())
    for frame in frames(0, 10_000):
        chunker.add(frame)
        assert chunker.held_frames <= 8 + chunker.max_pending_frames
    assert chunker.max_pending_frames == 16
    assert chunker.frames_received == 10_000
    assert chunker.frames_dropped == 10_000 - chunker.held_frames
    chunk = chunker.take()
    assert chunk is not None
    assert (chunk.last_seq, chunk.covered) == (9_999, 16)


def test_a_pending_bound_below_chunk_frames_is_raised_to_it() -> None:
    assert Chunker(chunk_frames=8, chunk_seconds=1, max_images=1, max_pending_frames=2).max_pending_frames == 8


@pytest.mark.parametrize(("frames_", "seconds", "images"), [(0, 1.0, 1), (1, 0.0, 1), (1, 1.0, 0)])
def test_invalid_settings_are_refused(frames_: int, seconds: float, images: int) -> None:
    with pytest.raises(ValueError, match="chunk_frames"):
        Chunker(chunk_frames=frames_, chunk_seconds=seconds, max_images=images)


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.one_of(st.just("take"), st.floats(0.0, 3.0), st.integers(1, 20)), max_size=60),
    chunk_frames=st.integers(1, 10),
    max_images=st.integers(1, 6),
)
def test_every_frame_is_either_in_a_chunk_held_or_counted_dropped(
    ops: list[str | float | int], chunk_frames: int, max_images: int
) -> None:
    clock = Clock()
    chunker = Chunker(chunk_frames, chunk_seconds=1.0, max_images=max_images, clock=clock)
    covered, last_seq, next_seq = 0, -1, 0
    for op in ops:
        if isinstance(op, str):  # "take"
            if (chunk := chunker.take()) is not None:
                assert 1 <= len(chunk.frames) <= max_images
                assert chunk.first_seq > last_seq
                assert chunk.frames[0].seq == chunk.first_seq or max_images == 1  # one image: the newest
                assert chunk.frames[-1].seq == chunk.last_seq
                covered, last_seq = covered + chunk.covered, chunk.last_seq
        elif isinstance(op, float):
            clock.now += op
        elif isinstance(op, int):
            feed(chunker, frames(next_seq, op))
            next_seq += op
        assert chunker.held_frames <= chunk_frames + chunker.max_pending_frames
    assert chunker.frames_received == next_seq == covered + chunker.held_frames + chunker.frames_dropped


def test_frames_added_from_one_thread_while_another_takes_chunks_are_all_accounted_for() -> None:
    chunker = Chunker(chunk_frames=4, chunk_seconds=60, max_images=2, max_pending_frames=8)
    done = threading.Event()
    taken: list[Chunk] = []

    def take_until_done() -> None:
        while not done.is_set() or chunker.held_frames:
            if (chunk := chunker.take()) is not None:
                taken.append(chunk)
            elif done.is_set():
                chunker.flush()

    taker = threading.Thread(target=take_until_done)
    taker.start()
    for frame in frames(0, 20_000):
        chunker.add(frame)
    done.set()
    taker.join(timeout=30)
    assert not taker.is_alive()
    assert [c.index for c in taken] == list(range(len(taken)))
    assert all(a.last_seq < b.first_seq for a, b in itertools.pairwise(taken))
    assert sum(c.covered for c in taken) + chunker.frames_dropped == 20_000
