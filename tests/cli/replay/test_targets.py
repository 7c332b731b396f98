"""``gpurelay replay`` bounds (--until, --limit), --dry-run and --to-subject against a real nats-server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.js import JetStreamContext
from typer.testing import Result

from contracts.event_ids import replay_msg_id
from contracts.events.registry import EventType
from contracts.streams import JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from tests.cli.replay.test_replay import lines, replay
from tests.support.events import job_event, publish


@pytest.fixture
def env(nats_server: EmbeddedNats, namespace: Namespace, tmp_path: Any) -> dict[str, str]:
    """The CLI's settings: this test's NATS and namespace, no dev.env."""
    return {
        "GPURELAY_NATS_URL": nats_server.url,
        "GPURELAY_NAMESPACE": namespace.name,
        "GPURELAY_DATA_DIR": str(tmp_path),
    }


@pytest.fixture
async def seqs(js: JetStreamContext, declared: Declarations, subjects: Subjects) -> list[int]:
    """Five events: acme job_a (3), globex job_b (2)."""
    out = [await publish(js, subjects, job_event("acme", "job_a", EventType.JOB_LOG)) for _ in range(3)]
    return out + [await publish(js, subjects, job_event("globex", "job_b", EventType.JOB_LOG)) for _ in range(2)]


def summary(result: Result) -> dict[str, Any]:
    """The JSON summary a non-stdout replay prints."""
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


async def last_seq(js: JetStreamContext, namespace: Namespace) -> int:
    return int((await js.stream_info(namespace.stream(JOBS))).state.last_seq)


async def test_until_and_limit_bound_the_range(env: dict[str, str], seqs: list[int]) -> None:
    assert [x["seq"] for x in lines(await replay(["--until", str(seqs[2])], env))] == seqs[:3]
    assert [x["seq"] for x in lines(await replay(["--limit", "2"], env))] == seqs[:2]
    assert [x["seq"] for x in lines(await replay(["--from", str(seqs[1]), "--limit", "2"], env))] == seqs[1:3]
    both = ["--subject", "jobs.globex.>", "--until", str(seqs[4]), "--limit", "1"]
    assert [x["seq"] for x in lines(await replay(both, env))] == [seqs[3]]
    assert [x["seq"] for x in lines(await replay(["--until", "2999-01-01T00:00:00Z"], env))] == seqs
    assert lines(await replay(["--until", "1d"], env)) == []  # stored after a day ago
    assert (await replay(["--until", "tomorrow"], env)).exit_code == 2
    assert (await replay(["--limit", "0"], env)).exit_code == 2


async def test_dry_run_counts_and_sends_nothing(
    env: dict[str, str], seqs: list[int], js: JetStreamContext, namespace: Namespace
) -> None:
    result = await replay(["--dry-run", "--subject", "jobs.acme.>"], env)
    assert "counting to stdout" in result.stderr
    assert "3/3" in result.stderr  # the progress bar knew the total
    counted = summary(result)
    assert counted == {"target": "stdout", "dry_run": True, "matched": 3, "would_send": 3, "skipped": {}}
    before = await last_seq(js, namespace)
    copy = summary(await replay(["--dry-run", "--to-subject", "jobs.acme.job_c.log", "--limit", "4"], env))
    assert (copy["matched"], copy["would_send"]) == (4, 4)
    assert await last_seq(js, namespace) == before


async def test_to_subject_marks_each_copy_and_a_repeat_is_stored_once(
    env: dict[str, str], seqs: list[int], js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    target = "jobs.acme.job_copy.log"
    first = summary(await replay(["--subject", "jobs.acme.job_a.*", "--to-subject", target], env))
    assert (first["matched"], first["sent"], first["duplicates"]) == (3, 3, 0)
    copies = []
    for seq in range(seqs[-1] + 1, seqs[-1] + 4):
        copies.append(await js.get_msg(namespace.stream(JOBS), seq))
    for original_seq, copy in zip(seqs[:3], copies, strict=True):
        original = await js.get_msg(namespace.stream(JOBS), original_seq)
        assert copy.subject.rpartition(".")[0] == namespace.subject(target)  # stored with its slot token
        assert copy.data == original.data
        assert copy.headers is not None
        assert copy.headers["Gpurelay-Replay-Of"] == f"JOBS:{original_seq}"
        assert copy.headers["Nats-Msg-Id"] == replay_msg_id("JOBS", original_seq, target)
    again = summary(await replay(["--subject", "jobs.acme.job_a.*", "--to-subject", target], env))
    assert (again["sent"], again["duplicates"]) == (0, 3)
    before = await last_seq(js, namespace)
    # Replaying every job event into a subject of the same filter ends at the last message stored at the start.
    everything = summary(await replay(["--subject", "jobs.>", "--to-subject", "jobs.acme.job_all.log"], env))
    assert everything["matched"] == before
    assert await last_seq(js, namespace) == 2 * before


async def test_a_subject_no_stream_stores_and_bad_combinations_exit_2(env: dict[str, str], seqs: list[int]) -> None:
    nowhere = await replay(["--to-subject", "nobody.listens"], env)
    assert nowhere.exit_code == 2
    assert "no stream stores" in nowhere.output
    for args in (
        ["--to-subject", "jobs.a.b.log", "--to-webhook", "whe_x"],
        ["--to-subject", "jobs.a.b.log", "--follow"],
        ["--apply"],
        ["--rebuild", "uploads"],
        ["--rebuild", "jobs", "--from", "2"],
        ["--rebuild", "jobs", "--apply", "--dry-run"],
        ["--to-webhook", "whe_nobody"],
    ):
        assert (await replay(args, env)).exit_code == 2, args
