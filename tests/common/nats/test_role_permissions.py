"""Each role's NATS user against a real nats-server with the users gpurelay renders: what the role must do
works, and a sample of what it must not is refused by the server.

Each test's server has its own store and the ``authorization`` block of
:func:`~services.common.nats.server.auth.render_authorization` (namespace ``rp``, so the namespaced
names are what is granted). A refusal counts only when the server said it: nats-py hands the server's
``-ERR 'Permissions Violation ...'`` to the connection's error callback (the client knows no permissions
of its own), the server's log names the user and the subject, and nothing of it reached a stream.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NoKeysError, NotFoundError
from nats.js.kv import KeyValue

from contracts.ids import tenant_key
from contracts.streams import DISPATCH, JOBS, JOBS_FOLD, KV_APIKEYS, KV_JOBS, KV_UPLOADS, KV_WEBHOOKS, declarations
from contracts.subjects import Namespace, Subjects
from services.common.config import BaseServiceSettings
from services.common.nats.declarations import NotDeclaredError, apply_declarations, check_declarations, declare_all
from services.common.nats.identity import identity_options
from services.common.nats.long_pull import LEADER_ELECTED
from services.common.nats.permissions import Role, bound_streams, inbox_prefix, user_name
from services.common.nats.server.auth import render_authorization
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.partitions import fold_durable, partition_filters, retire_fold_copy
from services.dispatcher.fold.pinned.consumer import PinnedConsumer
from tests.support.nats_deploy import role_passwords

NS = Namespace("rp")
SUBJECTS = Subjects(NS)
PASSWORDS = role_passwords()
REFUSAL_WAIT_S = 15.0
"""How long a refusal may take to come back (a bound for a loaded machine, not a timing claim)."""


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A fresh nats-server with one user per role (namespace ``rp``); nothing is declared yet."""
    authorization = render_authorization(NS, declarations(NS), dict(PASSWORDS))
    server = EmbeddedNats(tmp_path / "nats", authorization=authorization)
    server.start()
    yield server
    server.stop()


@dataclass
class RoleClient:
    """A connection as one role's user, with the errors the server sent it."""

    role: Role
    server: EmbeddedNats
    errors: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    nc: NatsClient = field(default_factory=NatsClient)

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream(timeout=5.0)

    async def refused(self, subject: str, operation: str = "publish") -> None:
        """Wait for the server's permissions violation of ``operation`` on ``subject``; check its log says so."""
        wanted = f'permissions violation for {"subscription" if operation == "subscribe" else "publish"} to "{subject}"'
        seen: list[str] = []
        async with asyncio.timeout(REFUSAL_WAIT_S):
            while wanted.lower() not in (error := await self.errors.get()).lower():
                seen.append(error)
        kind = "Subscription" if operation == "subscribe" else "Publish"
        line = rf'"\$G/user:{re.escape(user_name(NS, self.role))}" - {kind} Violation - Subject "{re.escape(subject)}"'
        assert re.search(line, self.server.log_tail(400)), f"the server's log does not show {line}"

    async def publish_refused(self, subject: str, data: bytes = b"{}") -> None:
        """A core publish to ``subject`` (with a reply inbox, as a request would) is refused by the server."""
        await self.nc.publish(subject, data, reply=self.nc.new_inbox())
        await self.nc.flush()
        await self.refused(subject)

    async def subscribe_refused(self, subject: str) -> None:
        """A subscription to ``subject`` is refused by the server."""
        await self.nc.subscribe(subject)
        await self.nc.flush()
        await self.refused(subject, "subscribe")


ConnectAs = Callable[[Role], Awaitable["RoleClient"]]


@pytest.fixture
async def connect_as(secured: EmbeddedNats) -> AsyncIterator[ConnectAs]:
    """``await connect_as(role)``: a connection as ``role``'s user (closed after the test)."""
    clients: list[RoleClient] = []

    async def connect(role: Role) -> RoleClient:
        settings = BaseServiceSettings(
            nats_url=secured.url, namespace=NS.name, nats_user=user_name(NS, role), nats_password=PASSWORDS[role]
        )
        client = RoleClient(role, secured)

        async def on_error(exc: Exception) -> None:
            client.errors.put_nowait(str(exc))

        client.nc = await nats.connect(
            settings.nats_servers, **identity_options(settings), error_cb=on_error, max_reconnect_attempts=0
        )
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.nc.close()


@pytest.fixture
async def declared(connect_as: ConnectAs) -> None:
    """The operator applies the declarations (every service only binds to them)."""
    operator: RoleClient = await connect_as("operator")
    await apply_declarations(operator.js, declarations(NS))


async def test_a_connection_without_a_user_or_with_a_wrong_password_is_refused(secured: EmbeddedNats) -> None:
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
        await nats.connect(secured.url, max_reconnect_attempts=0, allow_reconnect=False)
    user = user_name(NS, "gateway")
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
        await nats.connect(secured.url, user=user, password="wrong", max_reconnect_attempts=0, allow_reconnect=False)


async def test_only_the_operator_declares_and_each_role_binds_to_its_streams(connect_as: ConnectAs) -> None:
    gateway: RoleClient = await connect_as("gateway")
    with pytest.raises(NotDeclaredError, match=NS.stream(JOBS)):  # it binds, and there is nothing yet
        await declare_all(gateway.js, gateway_settings(gateway))
    await gateway.publish_refused(f"$JS.API.STREAM.CREATE.{NS.stream(JOBS)}")
    await declared_by_operator(connect_as)
    assert (await declare_all(gateway.js, gateway_settings(gateway))).created == []
    roles: tuple[Role, ...] = ("gateway", "dispatcher", "notifier", "worker")
    for role in roles:
        client: RoleClient = await connect_as(role)
        names = bound_streams(role, NS, declarations(NS))
        report = await check_declarations(client.js, names)
        assert sorted(report.unchanged) == sorted(names) != []


def gateway_settings(client: RoleClient) -> BaseServiceSettings:
    """The settings the gateway's ``declare_all`` reads: its namespace and its user."""
    return BaseServiceSettings(namespace=NS.name, nats_user=user_name(NS, client.role))


async def declared_by_operator(connect_as: ConnectAs) -> None:
    operator: RoleClient = await connect_as("operator")
    report = await apply_declarations(operator.js, declarations(NS))
    assert not report.kept


@pytest.mark.usefixtures("declared")
async def test_the_gateway_submits_and_may_not_report_a_workers_outcome(connect_as: ConnectAs) -> None:
    gateway: RoleClient = await connect_as("gateway")
    jobs = await gateway.js.key_value(NS.bucket(KV_JOBS))
    await jobs.create(tenant_key("acme", "job_1"), b"{}")
    ack = await gateway.js.publish(SUBJECTS.job_event("acme", "job_1", "created"), b"{}")
    assert ack.stream == NS.stream(JOBS)
    apikeys = await gateway.js.key_value(NS.bucket(KV_APIKEYS))
    assert [key async for key in _keys(apikeys)] == []  # it reads keys (none yet)
    before = (await gateway.js.stream_info(NS.stream(JOBS))).state.last_seq

    succeeded = SUBJECTS.job_event("acme", "job_1", "succeeded")
    await gateway.publish_refused(succeeded)
    await gateway.publish_refused(f"$KV.{NS.bucket(KV_APIKEYS)}.key_1")  # it may not write API keys
    await gateway.subscribe_refused(inbox_prefix(user_name(NS, "dispatcher")) + ".>")  # nor read others' replies
    assert (await gateway.js.stream_info(NS.stream(JOBS))).state.last_seq == before


@pytest.mark.usefixtures("declared")
async def test_the_notifier_reads_jobs_and_may_not_write_them(connect_as: ConnectAs) -> None:
    dispatcher: RoleClient = await connect_as("dispatcher")
    await (await dispatcher.js.key_value(NS.bucket(KV_JOBS))).put(tenant_key("acme", "job_2"), b'{"v": 1}')
    notifier: RoleClient = await connect_as("notifier")
    jobs = await notifier.js.key_value(NS.bucket(KV_JOBS))
    entry = await jobs.get(tenant_key("acme", "job_2"))
    assert entry.value == b'{"v": 1}'
    webhooks = await notifier.js.key_value(NS.bucket(KV_WEBHOOKS))
    await webhooks.put("acme.whe_1", b"{}")  # the endpoints it disables after exhausted retries
    sub = await notifier.js.subscribe(SUBJECTS.all_jobs(), stream=NS.stream(JOBS), ordered_consumer=True)
    await sub.unsubscribe()
    notices = await notifier.nc.subscribe(f"$KV.{NS.bucket(KV_WEBHOOKS)}.>")  # the fan-out's write notices
    await webhooks.put("acme.whe_2", b"{}")
    assert (await notices.next_msg(timeout=5)).subject.endswith("acme.whe_2")
    await notifier.subscribe_refused(f"$KV.{NS.bucket(KV_UPLOADS)}.>")  # a bucket it may not read

    await notifier.publish_refused(f"$KV.{NS.bucket(KV_JOBS)}.{tenant_key('acme', 'job_2')}", b'{"v": 2}')
    await notifier.publish_refused(f"$JS.API.STREAM.DELETE.{NS.stream(JOBS)}")
    await notifier.publish_refused(SUBJECTS.job_event("acme", "job_2", "canceled"))
    assert (await jobs.get(tenant_key("acme", "job_2"))).value == b'{"v": 1}'


@pytest.mark.usefixtures("declared")
async def test_a_worker_reports_its_job_and_may_not_read_api_keys(connect_as: ConnectAs) -> None:
    worker: RoleClient = await connect_as("worker")
    gateway: RoleClient = await connect_as("gateway")
    cancels: asyncio.Queue[str] = asyncio.Queue()

    async def on_cancel(msg: Msg) -> None:
        cancels.put_nowait(msg.subject)

    await worker.nc.subscribe(SUBJECTS.job_event("acme", "job_3", "cancel_requested"), cb=on_cancel)
    await worker.nc.flush()
    for event in ("started", "progress", "succeeded"):
        ack = await worker.js.publish(SUBJECTS.job_event("acme", "job_3", event), b"{}")
        assert ack.stream == NS.stream(JOBS)
    await gateway.js.publish(SUBJECTS.job_event("acme", "job_3", "cancel_requested"), b"{}")
    async with asyncio.timeout(REFUSAL_WAIT_S):
        assert await cancels.get() == SUBJECTS.job_event("acme", "job_3", "cancel_requested")
    frames = SUBJECTS.session_frames("acme", "job_3")
    await gateway.js.publish(frames, b"frame")
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    feed = await worker.js.subscribe(frames, stream=NS.stream("FRAMES"), ordered_consumer=True, config=config)
    assert (await feed.next_msg(timeout=REFUSAL_WAIT_S)).data == b"frame"
    await feed.unsubscribe()

    apikeys = f"KV_{NS.bucket(KV_APIKEYS)}"
    await worker.publish_refused(f"$JS.API.DIRECT.GET.{apikeys}.$KV.{NS.bucket(KV_APIKEYS)}.key_1")
    await worker.publish_refused(f"$JS.API.STREAM.INFO.{apikeys}")
    await worker.publish_refused(f"$JS.API.CONSUMER.CREATE.{apikeys}")
    await worker.subscribe_refused(f"$KV.{NS.bucket(KV_APIKEYS)}.>")
    await worker.publish_refused(SUBJECTS.job_event("acme", "job_3", "created"))  # lifecycle events are not its
    await worker.publish_refused(SUBJECTS.job_event("acme", "job_3", "canceled"))


async def _keys(kv: KeyValue) -> AsyncIterator[str]:
    """The bucket's keys (none when empty), through its watch (an ordered consumer)."""
    try:
        for key in await kv.keys():
            yield key
    except NoKeysError:
        return


def test_the_servers_config_holds_the_roles_users_only(secured: EmbeddedNats) -> None:
    text = Path(secured.config_path).read_text()
    assert sorted(re.findall(r'user: "([^"]+)"', text)) == sorted(user_name(NS, role) for role in PASSWORDS)
    assert secured.config_path.stat().st_mode & 0o777 == 0o600


@pytest.mark.usefixtures("declared")
async def test_the_dispatcher_may_retire_the_folds_copy_and_read_jobs_slots(connect_as: ConnectAs) -> None:
    """An upgrade deletes ``JOBS_FOLD``, the copy of JOBS an earlier version folded from
    (services/dispatcher/fold/partitions.py), and makes the partitions' pinned consumers on JOBS; it may
    not have JOBS' leader step down (nothing of it needs that since the copy's source watch went)."""
    dispatcher: RoleClient = await connect_as("dispatcher")
    copy = NS.stream(JOBS_FOLD)
    await dispatcher.js.add_stream(StreamConfig(name=copy, subjects=[NS.subject("fold.>")]))  # as it was made
    await retire_fold_copy(dispatcher.js, NS)
    with pytest.raises(NotFoundError):
        await dispatcher.js.stream_info(copy)
    consumer = PinnedConsumer(NS.stream(JOBS), fold_durable(0), tuple(partition_filters(NS, 0, 2)), ack_wait_s=5.0,
                              max_deliver=3, max_ack_pending=8, pin_timeout_s=7.0)  # fmt: skip
    await consumer.ensure(dispatcher.nc, None)
    assert dispatcher.errors.empty()
    await dispatcher.publish_refused(f"$JS.API.STREAM.LEADER.STEPDOWN.{NS.stream(JOBS)}")


async def test_pullers_may_hear_their_consumers_elections(connect_as: ConnectAs) -> None:
    """The long pulls (dispatch tickets, the webhook fan-out) and the fold's pinned pulls follow their
    consumer's leader elections (services/common/nats/long_pull.py); another stream's they may not."""
    dispatcher: RoleClient = await connect_as("dispatcher")
    notifier: RoleClient = await connect_as("notifier")
    for client, stream, durable in (
        (dispatcher, NS.stream(DISPATCH), "dispatch-pose"),
        (dispatcher, NS.stream(JOBS), "dispatcher-fold-0"),
        (notifier, NS.stream(JOBS), "notifier_fanout"),
    ):
        await client.nc.subscribe(LEADER_ELECTED.format(stream=stream, durable=durable))
        await client.nc.flush()
    assert dispatcher.errors.empty()
    assert notifier.errors.empty()
    await notifier.subscribe_refused(LEADER_ELECTED.format(stream=NS.stream(DISPATCH), durable="dispatch-pose"))
