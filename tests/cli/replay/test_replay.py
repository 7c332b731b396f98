"""``gpurelay replay`` against a real nats-server: start sequence, subject filter, time, caught up."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from nats.js import JetStreamContext
from typer.testing import CliRunner, Result

from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.cli.main import app
from services.cli.replay.reader import consumer_config, parse_since, replay_stream
from services.common.config import BaseServiceSettings
from services.common.nats.connection import cancel_and_wait
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.events import job_event, publish


@pytest.fixture
def env(nats_server: EmbeddedNats, namespace: Namespace, tmp_path: Path) -> dict[str, str]:
    """The CLI's settings: this test's NATS and namespace, no dev.env."""
    return {
        "GPURELAY_NATS_URL": nats_server.url,
        "GPURELAY_NAMESPACE": namespace.name,
        "GPURELAY_DATA_DIR": str(tmp_path),
    }


async def replay(args: list[str], env: dict[str, str]) -> Result:
    """``gpurelay replay ARGS`` in a thread, bounded in time (it must stop once caught up)."""
    runner = CliRunner()
    return await asyncio.wait_for(asyncio.to_thread(runner.invoke, app, ["replay", *args], env=env), 20)


async def expected(js: JetStreamContext, namespace: Namespace, seqs: list[int]) -> list[dict[str, Any]]:
    """The lines replay must print for these stream sequences, read back with direct gets."""
    out = []
    for seq in seqs:
        msg = await js.get_msg(namespace.stream(JOBS), seq)
        assert msg.data is not None
        assert msg.subject is not None
        assert msg.time is not None
        text = msg.data.decode(errors="replace")
        try:
            event: Any = json.loads(text)
        except ValueError:
            event = text
        when = msg.time.astimezone(UTC).isoformat().replace("+00:00", "Z")
        out.append({"seq": seq, "subject": namespace.strip(msg.subject), "time": when, "event": event})
    return out


def lines(result: Result) -> list[dict[str, Any]]:
    """stdout as JSON lines."""
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
async def history(js: JetStreamContext, declared: Declarations, subjects: Subjects) -> list[int]:
    """Seven messages: acme job_a (3), globex job_b (2), acme job_c (1), one raw text message."""
    seqs = [await publish(js, subjects, job_event("acme", "job_a", EventType.JOB_LOG)) for _ in range(3)]
    seqs += [await publish(js, subjects, job_event("globex", "job_b", EventType.JOB_PROGRESS)) for _ in range(2)]
    seqs.append(await publish(js, subjects, job_event("acme", "job_c", EventType.JOB_SUCCEEDED)))
    ack = await js.publish(subjects.job_event("acme", "job_c", "log"), b"not json \xff")
    return [*seqs, ack.seq]


async def test_from_sequence_prints_exactly_the_rest(
    env: dict[str, str], js: JetStreamContext, namespace: Namespace, history: list[int]
) -> None:
    got = lines(await replay(["--from", str(history[3])], env))
    assert got == await expected(js, namespace, history[3:])
    assert got[-1]["event"] == "not json \ufffd"
    every = lines(await replay([], env))
    assert [line["seq"] for line in every] == history


async def test_subject_filter_is_relative_to_the_namespace(
    env: dict[str, str], js: JetStreamContext, namespace: Namespace, history: list[int]
) -> None:
    acme = [history[i] for i in (0, 1, 2, 5, 6)]
    got = lines(await replay(["--subject", "jobs.acme.>"], env))
    assert got == await expected(js, namespace, acme)
    assert {line["event"]["tenant"] for line in got[:-1]} == {"acme"}
    one_job = lines(await replay(["--subject", "jobs.globex.job_b.*", "--from", str(history[4])], env))
    assert [line["seq"] for line in one_job] == [history[4]]
    assert lines(await replay(["--subject", "jobs.nobody.>"], env)) == []


async def test_since_a_time(env: dict[str, str], js: JetStreamContext, subjects: Subjects, history: list[int]) -> None:
    assert [line["seq"] for line in lines(await replay(["--since", "10m"], env))] == history
    assert lines(await replay(["--since", "2999-01-01T00:00:00Z"], env)) == []
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)
    latest = await publish(js, subjects, job_event("acme", "job_d", EventType.JOB_LOG))
    assert [line["seq"] for line in lines(await replay(["--since", middle.isoformat()], env))] == [latest]


async def test_follow_keeps_reading_new_messages(
    env: dict[str, str], js: JetStreamContext, subjects: Subjects, history: list[int], namespace: Namespace
) -> None:
    settings = BaseServiceSettings(nats_url=env["GPURELAY_NATS_URL"], namespace=namespace.name)
    seen: list[dict[str, Any]] = []
    task = asyncio.create_task(
        replay_stream(settings, JOBS, "jobs.acme.job_e.*", consumer_config(None, None), follow=True, emit=seen.append)
    )
    try:
        await asyncio.sleep(0.3)
        assert seen == []
        seq = await publish(js, subjects, job_event("acme", "job_e", EventType.JOB_LOG))
        await wait_for(lambda: seen, what="the followed message")
        assert [line["seq"] for line in seen] == [seq]
        assert not task.done()
    finally:
        await cancel_and_wait([task])  # cancelled again if 3.11's wait_for swallowed it


async def test_a_follow_since_a_time_reads_on_after_its_consumer_is_made_again(
    env: dict[str, str],
    js: JetStreamContext,
    subjects: Subjects,
    history: list[int],
    namespace: Namespace,
    nats_server: EmbeddedNats,
) -> None:
    """A restarted server takes the replay's consumer with it; nats-py makes it again (after two missed
    heartbeats) from the stream's first message when none came yet: nothing before the start time is
    printed, and what is published after the restart is."""
    settings = BaseServiceSettings(nats_url=env["GPURELAY_NATS_URL"], namespace=namespace.name)
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC)  # after every message of history
    seen: list[dict[str, Any]] = []
    config = consumer_config(None, middle)
    task = asyncio.create_task(replay_stream(settings, JOBS, "jobs.acme.>", config, follow=True, emit=seen.append))

    async def reading() -> bool:
        return bool((await js.stream_info(namespace.stream(JOBS))).state.consumer_count)

    try:
        await wait_for(reading, 20, "the replay's consumer")
        nats_server.kill()
        nats_server.start()
        async with asyncio.timeout(60):
            while True:
                try:
                    seq = await publish(js, subjects, job_event("acme", "job_f", EventType.JOB_LOG))
                    break
                except (nats.errors.Error, TimeoutError):
                    await asyncio.sleep(0.5)
        await wait_for(lambda: seen, 60, "the message published after the restart")
        assert [line["seq"] for line in seen] == [seq]
    finally:
        await cancel_and_wait([task])


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--since", "yesterday"], "for --since: 'yesterday' is neither ISO 8601"),
        (["--until", "abc"], "for --until: 'abc' is neither a stream sequence (digits)"),
        (["--since", "1m", "--from", "3"], "--since or --from"),
        (["--from", "0"], "--from"),
        (["--stream", "NOPE"], "'nope' is not one of 'jobs', 'telemetry', 'frames', 'deadletter'"),
        (["--stream", "WEBHOOK_DELIVERIES"], "'webhook_deliveries' is not one of"),  # a work queue
    ],
)
async def test_bad_usage_exits_2_naming_the_option(
    env: dict[str, str], declared: Declarations, args: list[str], said: str
) -> None:
    result = await replay(args, env)
    assert result.exit_code == 2, result.output
    assert said.lower() in " ".join(result.output.replace("│", " ").split()).lower(), result.output
    assert "Traceback" not in result.output


async def test_a_stream_is_named_in_any_case(
    env: dict[str, str], js: JetStreamContext, namespace: Namespace, history: list[int]
) -> None:
    assert lines(await replay(["--stream", "jobs"], env)) == await expected(js, namespace, history)


def test_parse_since() -> None:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert parse_since("90s", now) == datetime(2026, 11, 22, 9, 58, 30, tzinfo=UTC)
    assert parse_since("2h", now) == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert parse_since("2026-11-22T09:00:00") == datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    assert parse_since("2026-11-22T09:00:00+01:00") == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
