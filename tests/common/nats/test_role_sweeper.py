"""The dispatcher's repair of a lost ``job.created`` works with the dispatcher's own NATS user.

The gateway writes a job's record, then publishes ``job.created``; when that publish is lost, the
dispatcher's :class:`~services.dispatcher.scheduling.sweeper.CreatedSweeper` publishes it (the
gateway's deterministic id, so a late original is a duplicate). Its user must be allowed that publish,
or the server refuses it and the job stays ``created`` for ever (the network-fault suite found the
refusal: a record that sat in ``created`` during a partition).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from contracts.envelope import utc_now
from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.streams import JOBS, KV_JOBS, declarations
from contracts.subjects import Namespace, Subjects
from services.common.config import BaseServiceSettings
from services.common.nats.declarations import apply_declarations
from services.common.nats.identity import identity_options, identity_settings
from services.common.nats.permissions import Role
from services.common.nats.server.auth import render_authorization
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.job_events import JobEvents
from services.dispatcher.scheduling.sweeper import CreatedSweeper
from services.dispatcher.store import JobStore
from tests.support.dispatcher import POSE
from tests.support.nats_deploy import role_passwords

NS = Namespace("rs")
PASSWORDS = role_passwords()


@pytest.fixture
async def connect(tmp_path: Path) -> AsyncIterator[dict[Role, NatsClient]]:
    """A fresh server with a user per role, declared by the operator; a connection as each role."""
    server = EmbeddedNats(tmp_path / "nats", authorization=render_authorization(NS, declarations(NS), PASSWORDS))
    server.start()
    clients: dict[Role, NatsClient] = {}
    try:
        for role in ("operator", "gateway", "dispatcher"):
            own = BaseServiceSettings.model_validate(
                {"nats_url": server.url, "namespace": NS.name, **identity_settings(role, NS, PASSWORDS)}
            )
            clients[role] = await nats.connect(own.nats_servers, **identity_options(own), max_reconnect_attempts=0)
        await apply_declarations(clients["operator"].jetstream(timeout=5.0), declarations(NS))
        yield clients
    finally:
        for client in clients.values():
            await client.close()
        server.stop()


async def test_the_dispatcher_publishes_a_lost_job_created_as_its_own_user(
    connect: dict[Role, NatsClient],
) -> None:
    gateway = connect["gateway"].jetstream(timeout=5.0)
    record = JobRecord.new(new_id("job"), "acme", parse_job_spec(POSE), utc_now())
    await (await gateway.key_value(NS.bucket(KV_JOBS))).create(
        tenant_key("acme", record.id), record.model_dump_json().encode()
    )  # the gateway's job.created never went out

    js = connect["dispatcher"].jetstream(timeout=5.0)
    later = record.created_at + timedelta(minutes=5)
    sweeper = CreatedSweeper(JobStore(await js.key_value(NS.bucket(KV_JOBS))), JobEvents(js, NS), 60.0, lambda: later)
    assert await sweeper.sweep() == [record.id]
    subject = Subjects(NS).stored_job_event("acme", record.id, "created")
    stored = await connect["operator"].jetstream(timeout=5.0).get_last_msg(NS.stream(JOBS), subject)
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == f"created-{record.id}"
