"""The roles' permissions cannot drift: from the declarations, from the worker events the ingest route takes,
and from the committed deploy/nats/auth.conf; ``gpurelay nats declare`` applies them as the operator."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from nats.js import JetStreamContext
from typer.testing import CliRunner

from contracts.events.registry import job_event_name
from contracts.streams import OWNED_BUCKETS, OWNED_STREAMS, declarations
from contracts.subjects import Namespace
from services.cli.main import app
from services.common.nats import permissions
from services.common.nats.permissions import GRANTS, MANAGE, READ, ROLES, WORKER_EVENTS, role_permissions
from services.common.nats.server.auth import deploy_authorization
from services.common.nats.server.embedded import EmbeddedNats
from services.gateway.ingest.routes import WORKER_EVENT_TYPES
from tests.support.nats_deploy import DEPLOY_NATS


def test_the_committed_auth_conf_is_what_the_declarations_render() -> None:
    assert (DEPLOY_NATS / "auth.conf").read_text() == deploy_authorization(), (
        "deploy/nats/auth.conf is stale: gpurelay nats auth-config > deploy/nats/auth.conf"
    )


def test_gpurelay_nats_auth_config_prints_it_for_a_namespace() -> None:
    result = CliRunner().invoke(app, ["nats", "auth-config", "--namespace", "staging"])
    assert result.exit_code == 0, result.output
    assert result.stdout == deploy_authorization(Namespace("staging"))
    assert '"staging.jobs.*.*.created"' in result.stdout
    assert "$GPURELAY_NATS_GATEWAY_PASSWORD" in result.stdout


def test_the_worker_role_publishes_exactly_the_events_the_ingest_route_takes() -> None:
    assert sorted(WORKER_EVENTS) == sorted(job_event_name(event) for event in WORKER_EVENT_TYPES)


def test_a_grant_of_a_stream_or_bucket_nobody_declares_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ns, decls = Namespace("t"), declarations(Namespace("t"))
    monkeypatch.setitem(GRANTS, "worker", replace(GRANTS["worker"], streams={"JOBS_TYPO": READ}))
    with pytest.raises(KeyError, match="JOBS_TYPO"):
        role_permissions("worker", ns, decls)
    monkeypatch.setitem(GRANTS, "worker", replace(GRANTS["worker"], streams={}, buckets={"apikey": READ}))
    with pytest.raises(KeyError, match="apikey"):
        role_permissions("worker", ns, decls)


def test_the_operator_manages_every_declared_and_service_made_stream() -> None:
    ns = Namespace("t")
    decls = declarations(ns)
    allowed = set(role_permissions("operator", ns, decls).publish)
    streams = [d.name for d in decls.streams] + [ns.stream(name) for name in OWNED_STREAMS]
    streams += [f"KV_{d.name}" for d in decls.buckets] + [f"KV_{ns.bucket(name)}" for name in OWNED_BUCKETS]
    for stream in streams:
        assert set(permissions.stream_api(stream, MANAGE)[0]) <= allowed, stream
    for role in ROLES:  # every subject is under the namespace, or a JetStream one, or the role's own inbox
        for subject in role_permissions(role, ns, decls).publish + role_permissions(role, ns, decls).subscribe:
            assert subject.startswith(("t.", "$JS.", "$KV.t_", f"_INBOX.t_{role}.")), (role, subject)


async def test_gpurelay_nats_declare_applies_the_declarations(
    nats_server: EmbeddedNats, namespace: Namespace, js: JetStreamContext
) -> None:
    env = {"GPURELAY_NATS_URL": nats_server.url, "GPURELAY_NAMESPACE": namespace.name, "GPURELAY_DATA_DIR": "/none"}
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, app, ["nats", "declare"], env=env)
    assert result.exit_code == 0, result.output
    decls = declarations(namespace)
    assert f"created {len(decls.streams) + len(decls.buckets)}" in result.output
    assert (await js.stream_info(namespace.stream("JOBS"))).config.name == namespace.stream("JOBS")
    again = await asyncio.to_thread(runner.invoke, app, ["nats", "declare"], env=env)
    assert "created 0, updated 0" in again.output
