"""Which record the session page's snapshot read waits for (:func:`holds_snapshot`): the announced
snapshot, or one at least as far along, so a snapshot replaced while the page fetched it is not a wait
until the session ends followed by a 404 (a loaded machine's browser test saw one)."""

from __future__ import annotations

import hashlib

from contracts.envelope import utc_now
from contracts.ids import new_id
from contracts.job_parts import Artifact
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from services.gateway.dashboard.pages_live import holds_snapshot


def _sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def _session(snapshot: int | None, seq: int) -> JobRecord:
    """A splat session whose record holds snapshot number ``snapshot`` (none: ``None``) covering ``seq``."""
    record = JobRecord.new(new_id("job"), "acme", parse_job_spec({"kind": "splat"}), utc_now())
    if snapshot is None:
        return record
    artifact = Artifact(name="live/splat.ply", key=f"k/{snapshot}", size=10, sha256=_sha(snapshot))
    return record.with_session(snapshot=artifact, snapshot_seq=seq)


def test_the_announced_snapshot_or_one_as_far_along_is_served_at_once() -> None:
    assert holds_snapshot(_session(1, 10), _sha(1), 10)
    assert holds_snapshot(_session(2, 12), _sha(1), 10)  # replaced by a newer one while the page asked
    assert holds_snapshot(_session(2, 10), _sha(1), 10)  # trained further on the same frames
    assert holds_snapshot(_session(2, 12), _sha(1), None) is False  # a page that sends no seq waits, as before


def test_a_record_behind_the_announcement_is_waited_for() -> None:
    assert not holds_snapshot(_session(None, 0), _sha(1), 10)
    assert not holds_snapshot(_session(0, 8), _sha(1), 10)  # the fold has not reached it yet
