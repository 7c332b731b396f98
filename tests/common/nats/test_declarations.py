"""The declarations against a real nats-server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.errors import APIError

from contracts.streams import JOBS, KV_IDEMPOTENCY, KV_JOBS, KV_ROBOTS, Declarations, declarations
from contracts.subjects import Namespace
from services.common.config import BaseServiceSettings
from services.common.nats.declarations import (
    apply_declarations,
    bucket_config,
    declarations_of,
    stream_config,
)
from services.common.nats.kv import bind_bucket
from tests.support.stopping import stallable_server, through_a_stall


async def test_applying_twice_leaves_equal_configs(js: JetStreamContext, decls: Declarations) -> None:
    first = await apply_declarations(js, decls)
    assert sorted(first.created) == sorted([s.name for s in decls.streams] + [b.name for b in decls.buckets])
    before = {s.name: (await js.stream_info(s.name)).config for s in decls.streams}
    second = await apply_declarations(js, decls)
    assert second.created == []
    assert second.updated == []
    after = {s.name: (await js.stream_info(s.name)).config for s in decls.streams}
    assert before == after


async def test_applying_logs_what_it_created_at_info(
    js: JetStreamContext, decls: Declarations, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "services.common.nats.declarations"):
        report = await apply_declarations(js, decls)  # a reserved LogRecord key in ``extra`` raised here
    (applied,) = [r for r in caplog.records if r.getMessage() == "jetstream declarations applied"]
    assert applied.__dict__["declarations_created"] == report.created != []


async def test_changed_declaration_updates_the_stream(js: JetStreamContext, namespace: Namespace) -> None:
    await apply_declarations(js, declarations(namespace, frames_max_bytes=1 << 20))
    jobs = declarations(namespace, frames_max_bytes=1 << 20).stream(JOBS, namespace)
    changed = declarations(namespace, frames_max_bytes=1 << 20).model_copy(
        update={
            "streams": tuple(
                s.model_copy(update={"max_age_s": 7 * 24 * 3600.0}) if s.name == jobs.name else s
                for s in declarations(namespace, frames_max_bytes=1 << 20).streams
            )
        }
    )
    report = await apply_declarations(js, changed)
    assert report.updated == [jobs.name]
    info = await js.stream_info(jobs.name)
    assert info.config.max_age == 7 * 24 * 3600.0


async def test_kv_ttl_change_updates_bucket(js: JetStreamContext, decls: Declarations, namespace: Namespace) -> None:
    await apply_declarations(js, decls)
    name = namespace.bucket(KV_IDEMPOTENCY)
    changed = decls.model_copy(
        update={
            "buckets": tuple(b.model_copy(update={"ttl_s": 3600.0}) if b.name == name else b for b in decls.buckets)
        }
    )
    report = await apply_declarations(js, changed)
    assert report.updated == [name]
    assert (await js.stream_info(f"KV_{name}")).config.max_age == 3600.0


async def test_the_jobs_bucket_republishes_what_it_stores_and_an_older_bucket_is_brought_to_it(
    js: JetStreamContext, decls: Declarations, namespace: Namespace
) -> None:
    name = namespace.bucket(KV_JOBS)
    without = decls.model_copy(
        update={
            "buckets": tuple(b.model_copy(update={"republish": None}) if b.name == name else b for b in decls.buckets)
        }
    )
    await apply_declarations(js, without)  # a bucket made before the setting existed
    assert (await js.stream_info(f"KV_{name}")).config.republish is None
    report = await apply_declarations(js, decls)
    assert report.updated == [name]
    republish = (await js.stream_info(f"KV_{name}")).config.republish
    assert republish is not None
    assert (republish.src, republish.dest) == (f"$KV.{name}.>", namespace.subject("records.>"))
    assert (await apply_declarations(js, decls)).updated == []


async def test_jobs_answers_direct_gets_and_an_older_stream_is_brought_to_it(
    js: JetStreamContext, decls: Declarations, namespace: Namespace
) -> None:
    name = decls.stream(JOBS, namespace).name
    without = decls.model_copy(
        update={"streams": tuple(s.model_copy(update={"allow_direct": False}) for s in decls.streams)}
    )
    await apply_declarations(js, without)  # a JOBS declared before SSE catch-ups read it in batches
    assert not (await js.stream_info(name)).config.allow_direct
    report = await apply_declarations(js, decls)  # what `gpurelay nats declare` does
    assert report.updated == [name]
    assert (await js.stream_info(name)).config.allow_direct
    assert (await apply_declarations(js, decls)).updated == []


async def test_one_msg_id_stores_one_message(
    js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    subject = namespace.subject("jobs.acme.job_1.progress")
    headers = {"Nats-Msg-Id": "evt-1"}
    first = await js.publish(subject, b"{}", headers=headers)
    second = await js.publish(subject, b"{}", headers=headers)
    assert second.duplicate is True
    assert first.duplicate is not True
    assert second.seq == first.seq
    info = await js.stream_info(declared.stream(JOBS, namespace).name)
    assert info.state.messages == 1


async def test_a_kv_ttl_shorter_than_the_duplicate_window_applies(
    js: JetStreamContext, decls: Declarations, namespace: Namespace
) -> None:
    """A bucket made with a long TTL has a 2-minute duplicate window; a 1 s TTL must still apply."""
    await apply_declarations(js, decls)
    name = namespace.bucket(KV_ROBOTS)
    shorter = declarations(namespace, frames_max_bytes=1 << 20, telemetry_max_bytes=1 << 20, robots_ttl_s=1.0)
    report = await apply_declarations(js, shorter)
    assert name in report.updated
    config = (await js.stream_info(f"KV_{name}")).config
    assert config.max_age == 1.0
    assert (config.duplicate_window or 0) <= 1.0


def test_replicas_reach_every_stream_and_bucket(namespace: Namespace) -> None:
    settings = BaseServiceSettings(profile="test", namespace=namespace.name, nats_replicas=3)
    decls = declarations_of(settings)
    assert {s.replicas for s in decls.streams} | {b.replicas for b in decls.buckets} == {3}
    assert {stream_config(s).num_replicas for s in decls.streams} == {3}
    assert {bucket_config(b).replicas for b in decls.buckets} == {3}
    assert {s.replicas for s in declarations(namespace).streams} == {1}  # a single server's default


async def test_a_single_server_refuses_three_replicas(js: JetStreamContext, namespace: Namespace) -> None:
    with pytest.raises(APIError, match="replicas"):
        await apply_declarations(js, declarations(namespace, replicas=3))


async def test_declarations_applied_while_the_server_stalls_go_through_once_it_answers(
    tmp_path: Path, namespace: Namespace
) -> None:
    """A server that stops answering for a while makes a step time out; the step is tried again, not
    given up, and the whole set is there once the server answers again."""
    decls = declarations(namespace, frames_max_bytes=1 << 20)
    async with stallable_server(tmp_path / "nats") as (pid, js):
        report = await through_a_stall(pid, lambda: apply_declarations(js, decls))
        assert sorted(report.created + report.unchanged) == sorted(
            [s.name for s in decls.streams] + [b.name for b in decls.buckets]
        )
        for stream in decls.streams:
            assert (await js.stream_info(stream.name)).config.name == stream.name


async def test_a_bucket_bound_while_the_server_stalls_is_bound_once_it_answers(
    tmp_path: Path, namespace: Namespace
) -> None:
    """What a service binds right after its declarations: a stall there (or a cluster's 503 between meta
    leaders) is waited out, where ``js.key_value`` raised and the service exited during its start."""
    decls = declarations(namespace, frames_max_bytes=1 << 20)
    async with stallable_server(tmp_path / "nats") as (pid, js):
        await apply_declarations(js, decls)
        name = namespace.bucket(KV_JOBS)
        kv = await through_a_stall(pid, lambda: bind_bucket(js, name))
        assert (await kv.status()).bucket == name
