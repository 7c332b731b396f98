"""A replay compared with the session it replayed: :func:`compare` builds ``comparison.json``.

Both runs' figures come from their recordings (:class:`~contracts.recordings.comparison.RunFigures`).
The splat figures that need the model (PSNR) come from the workload's ``scorer``
(:attr:`~modal_workers.runtime.live_session.LiveSession.scorer`): each run's last snapshot rendered
at the same frames of the original recording (the replay's frame ``n`` is the original's ``n``-th
recorded frame, the order the feeder published them in). Those frames are the ones the replay held
out of its training (``params.holdout_every``) when it did, else at most :data:`EVAL_FRAMES` frames
evenly spaced over the recording.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable

from contracts.recordings.comparison import MAX_EVAL_FRAMES, ChunkPair, RunFigures, SessionComparison
from contracts.recordings.manifest import RecordedFrame, RecordingManifest
from modal_workers.runtime.live_session import Scorer
from modal_workers.runtime.session_frames import SessionFrame

EVAL_FRAMES = 8
_VERTEX = re.compile(rb"^element vertex (\d+)\s*$", re.MULTILINE)
Read = Callable[[str], bytes]


def eval_indexes(original: RecordingManifest, replay_params: dict[str, object]) -> tuple[list[int], bool]:
    """Indexes into the original's frames to score at, and whether the replay held them out."""
    count = len(original.frames)
    every = replay_params.get("holdout_every")
    if isinstance(every, int) and every > 1:
        held = [n - 1 for n in range(every, count + 1, every)]
        step = max(1, -(-len(held) // MAX_EVAL_FRAMES))
        return held[::step][:MAX_EVAL_FRAMES], True
    if count == 0:
        return [], False
    wanted = min(EVAL_FRAMES, count)
    return sorted({round(i * (count - 1) / max(1, wanted - 1)) for i in range(wanted)}), False


def session_frame(frame: RecordedFrame, data: bytes) -> SessionFrame:
    """A recorded frame as the workload took it."""
    joints = frame.joints
    return SessionFrame(
        frame.seq, frame.ts, frame.content_type, data, frame.pose,
        None if joints is None else list(joints.angles), None if joints is None else joints.ts,
    )  # fmt: skip


def ply_vertices(data: bytes) -> int | None:
    """A PLY's vertex count from its header (``None`` for anything else)."""
    header = data[: data.find(b"end_header")] if b"end_header" in data[:4096] else b""
    match = _VERTEX.search(header)
    return int(match.group(1)) if match else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1], 3)


def figures(manifest: RecordingManifest, read: Read, frames: list[SessionFrame], scorer: Scorer | None) -> RunFigures:
    """One run's figures (``frames``: the evaluation frames, scored by ``scorer`` on its last snapshot)."""
    taken = [f.processed_at for f in manifest.frames if f.processed_at is not None]
    span = taken[-1] - taken[0] if len(taken) > 1 else 0.0
    first_snapshot = manifest.snapshots[0].ts if manifest.snapshots else None
    last = manifest.snapshots[-1] if manifest.snapshots else None
    final = read(last.key) if last is not None and last.name.endswith(".ply") else None
    score = None if final is None or scorer is None or not frames else scorer(final, manifest.params, frames)
    latencies = [r.latency_ms for r in manifest.results if r.latency_ms is not None]
    return RunFigures(
        session_id=manifest.session_id, params=manifest.params, frames=len(manifest.frames),
        frames_per_s=round((len(taken) - 1) / span, 3) if span > 0 else None,
        time_to_first_snapshot_s=None if first_snapshot is None or manifest.started_at is None
        else round(first_snapshot - manifest.started_at, 3),
        snapshots=len(manifest.snapshots), results=len(manifest.results), alerts=len(manifest.alerts),
        gaussians=None if final is None else ply_vertices(final),
        psnr=None if score is None else round(score, 3),
        latency_ms_p50=_percentile(latencies, 50), latency_ms_p99=_percentile(latencies, 99),
    )  # fmt: skip


def chunk_pairs(original: RecordingManifest, replay: RecordingManifest) -> list[ChunkPair]:
    """Each chunk's answers side by side, by chunk number."""
    mine = {r.chunk: r for r in original.results}
    theirs = {r.chunk: r for r in replay.results}
    alerted = ({a.chunk for a in original.alerts}, {a.chunk for a in replay.alerts})
    pairs = []
    for chunk in sorted(mine.keys() | theirs.keys()):
        first = mine.get(chunk) or theirs[chunk]
        pair = ChunkPair(
            chunk=chunk, first_seq=first.first_seq, last_seq=first.last_seq,
            original=mine[chunk].text if chunk in mine else None,
            replay=theirs[chunk].text if chunk in theirs else None,
            original_alert=chunk in alerted[0], replay_alert=chunk in alerted[1],
        )  # fmt: skip
        pairs.append(pair)
    return pairs


def compare(
    original: RecordingManifest, read_original: Read, replay: RecordingManifest, read_replay: Read,
    scorer: Scorer | None,
) -> SessionComparison:  # fmt: skip
    """``comparison.json`` of ``replay`` against ``original``."""
    indexes, held_out = eval_indexes(original, replay.params)
    frames = [session_frame(original.frames[i], read_original(original.frames[i].key)) for i in indexes]
    return SessionComparison(
        kind=replay.kind,
        original=figures(original, read_original, frames, scorer),
        replay=figures(replay, read_replay, frames, scorer),
        eval_seqs=[i + 1 for i in indexes] if scorer is not None else [],
        held_out=held_out and scorer is not None,
        chunks=chunk_pairs(original, replay) if replay.results or original.results else [],
        created_at=time.time(),
    )
