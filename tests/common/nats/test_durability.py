"""What the servers gpurelay ships actually run, read back from each server's ``/varz``: JetStream syncs every
write before its ack (``sync_interval: always``) in the embedded server, ``gpurelay dev``, compose's
nats.conf and the 3-node cluster's configs; the deploy configs' users and the cluster's TLS work as
written; in ``gpurelay dev`` every part connects as its role's user.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient

from contracts.streams import declarations
from contracts.subjects import Subjects
from services.cli.dev import DevStack
from services.cli.dev_secrets import nats_password_path
from services.common.config import BaseServiceSettings, dev_env_path
from services.common.nats.declarations import apply_declarations
from services.common.nats.identity import identity_options
from services.common.nats.permissions import ROLES, Role
from services.common.nats.server.cluster import NatsCluster
from services.common.nats.server.config import ServerTls
from services.common.nats.server.embedded import EmbeddedNats
from services.common.nats.server.ports import free_port
from tests.support.nats_deploy import DEPLOY_NATS, ConfigServer, deployable_copy, make_certs, monitor, role_passwords

SECOND = 1_000_000_000
"""/varz gives ``sync_interval`` in nanoseconds."""


async def jetstream_config(monitor_url: str | None) -> dict[str, Any]:
    """``/varz``'s ``jetstream.config``: ``sync_always`` and ``sync_interval`` among them."""
    assert monitor_url is not None, "the server has no monitoring port"
    config: dict[str, Any] = (await monitor(monitor_url, "varz"))["jetstream"]["config"]
    return config


async def test_the_embedded_server_syncs_always_unless_given_a_period(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "always", monitor_port=0) as server:
        assert (await jetstream_config(server.monitor_url)).get("sync_always") is True
    with EmbeddedNats(tmp_path / "period", monitor_port=0, sync_interval="2m") as server:
        config = await jetstream_config(server.monitor_url)
        assert (config.get("sync_always"), config["sync_interval"]) == (None, 120 * SECOND)


async def test_every_node_of_the_loopback_cluster_syncs_always(tmp_path: Path) -> None:
    with NatsCluster(tmp_path, size=3) as cluster:
        for node in cluster.nodes:
            assert (await jetstream_config(node.monitor_url)).get("sync_always") is True, node.server_name


async def _authorized_users(monitor_url: str | None) -> list[str]:
    assert monitor_url is not None
    connz = await monitor(monitor_url, "connz", auth="true", limit=1000)
    return [conn.get("authorized_user", "") for conn in connz["connections"]]


async def test_gpurelay_dev_syncs_always_and_connects_each_part_as_its_role(tmp_path: Path) -> None:
    stack = DevStack(data_dir=tmp_path / "data", port=0)
    try:
        env = await stack.start()
        assert stack.nats is not None
        assert (await jetstream_config(stack.nats.monitor_url)).get("sync_always") is True
        users = await _authorized_users(stack.nats.monitor_url)
        # The gateway (and its ingest route as the worker), the dispatcher, the notifier,
        # the pool's two workers; nobody without a user, nobody as the operator once it has bootstrapped.
        assert sorted(set(users)) == ["dispatcher", "gateway", "notifier", "worker"], users
        assert users.count("worker") == 3, users
        assert env["GPURELAY_NATS_USER"] == "operator"
        assert dev_env_path(stack.data_dir).stat().st_mode & 0o777 == 0o600
        for role in ROLES:
            path = nats_password_path(stack.data_dir, role)
            assert path.stat().st_mode & 0o777 == 0o600
            assert path.read_text() in stack.nats.config_path.read_text()
        assert (stack.data_dir / "secrets").stat().st_mode & 0o777 == 0o700
    finally:
        await stack.stop()


async def test_gpurelay_dev_takes_the_period_and_store_limit_an_operator_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPURELAY_NATS_SYNC_INTERVAL", "120s")
    monkeypatch.setenv("GPURELAY_NATS_MAX_FILE_STORE", str(12 * 1024**3))
    stack = DevStack(data_dir=tmp_path / "data", port=0)
    try:
        await stack.start()
        assert stack.nats is not None
        config = await jetstream_config(stack.nats.monitor_url)
        assert (config.get("sync_always"), config["sync_interval"]) == (None, 120 * SECOND)
        assert config["max_storage"] == 12 * 1024**3
    finally:
        await stack.stop()


def test_a_sync_interval_nats_would_misread_is_refused() -> None:
    for wrong in ("2 m", "sometimes", "", "10"):
        with pytest.raises(ValueError, match="nats_sync_interval"):
            BaseServiceSettings(nats_sync_interval=wrong)
    assert BaseServiceSettings(nats_sync_interval="1h30m").nats_sync_interval == "1h30m"


async def _connect(url: str, role: Role, **options: Any) -> NatsClient:
    settings = BaseServiceSettings(nats_url=url, nats_user=role, nats_password=role_passwords()[role])
    return await nats.connect(url, **identity_options(settings), max_reconnect_attempts=0, **options)


async def test_the_compose_nats_conf_syncs_always_and_admits_only_the_roles(tmp_path: Path) -> None:
    client, monitoring = free_port(), free_port()
    config = deployable_copy(
        DEPLOY_NATS / "nats.conf", tmp_path, make_certs(tmp_path / "certs"),
        {"listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{client}", "http: 0.0.0.0:8222": f"http: 127.0.0.1:{monitoring}"},
    )  # fmt: skip
    server = ConfigServer(config, f"http://127.0.0.1:{monitoring}").start()
    try:
        assert (await jetstream_config(server.monitor_url)).get("sync_always") is True
        url = f"nats://127.0.0.1:{client}"
        with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
            await nats.connect(url, max_reconnect_attempts=0, allow_reconnect=False)
        operator = await _connect(url, "operator")
        await apply_declarations(operator.jetstream(), declarations())
        await operator.close()
        gateway = await _connect(url, "gateway")
        ack = await gateway.jetstream().publish(Subjects().job_event("acme", "job_1", "created"), b"{}")
        assert ack.stream == "JOBS"
        await gateway.close()
    finally:
        server.stop()


@pytest.fixture
def config_servers() -> Iterator[list[ConfigServer]]:
    """The servers a test starts, stopped in teardown whatever the test's coroutine was doing (a
    ``finally`` inside it never runs when a timeout leaves it suspended on a wedged cluster)."""
    servers: list[ConfigServer] = []
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.serial
@pytest.mark.timeout(180)
async def test_the_cluster_configs_form_a_tls_cluster_that_syncs_always_with_r3_streams(
    tmp_path: Path, config_servers: list[ConfigServer]
) -> None:
    tls = make_certs(tmp_path / "certs")
    for attempt in range(1, PORT_TRIES + 1):
        try:
            clients = _start_cluster(tmp_path / f"try-{attempt}", tls, config_servers)
            break
        except PortTakenError:
            for server in config_servers:
                server.stop()
            config_servers.clear()
            if attempt == PORT_TRIES:
                raise
    for server in config_servers:
        varz = await monitor(server.monitor_url, "varz")
        assert varz["jetstream"]["config"].get("sync_always") is True, server.config
        assert varz["cluster"].get("tls_required") is True, varz["cluster"]  # routes: mutual TLS
        assert varz["cluster"].get("tls_verify") is True, varz["cluster"]
        assert varz.get("tls_required") is True  # clients too
    urls = [f"tls://127.0.0.1:{port}" for port in clients.values()]
    with pytest.raises(ssl.SSLCertVerificationError):  # TLS is required, and a client needs the nodes' CA
        await nats.connect(f"nats://127.0.0.1:{clients[1]}", max_reconnect_attempts=0, allow_reconnect=False)
    settings = BaseServiceSettings(
        nats_url=",".join(urls), nats_user="operator", nats_password=role_passwords()["operator"],
        nats_tls_ca_file=tls.ca_file,
    )  # fmt: skip
    operator = await nats.connect(settings.nats_servers, **identity_options(settings), max_reconnect_attempts=60)
    try:
        report = await _declare_when_the_cluster_is_up(operator, declarations(replicas=3))
        assert "JOBS" in report
        info = await operator.jetstream().stream_info("JOBS")
        assert info.config.num_replicas == 3
        assert (await monitor(config_servers[0].monitor_url, "routez"))["num_routes"] >= 2
    finally:
        with contextlib.suppress(TimeoutError):  # a close waits on a reconnect that may never come
            await asyncio.wait_for(operator.close(), 10)


PORT_TRIES = 3
"""Clusters formed before the test gives up: the ports are picked free up front, and the first nodes'
outgoing route connections (ephemeral ports, the same range) once took the third node's route port
before it bound it ("bind: address already in use", a fresh clone's serial phase)."""


class PortTakenError(RuntimeError):
    """A node could not bind a port picked free for it: another socket took it first."""


def _start_cluster(folder: Path, tls: ServerTls, servers: list[ConfigServer]) -> dict[int, int]:
    """The 3 nodes of ``deploy/nats/cluster`` on loopback ports picked here, each appended to
    ``servers`` before its start (teardown stops it whatever interrupts the start); the client ports."""
    clients = {n: free_port() for n in (1, 2, 3)}
    routes = {n: free_port(besides=clients.values()) for n in (1, 2, 3)}
    monitors = {n: free_port(besides=[*clients.values(), *routes.values()]) for n in (1, 2, 3)}
    for n in (1, 2, 3):
        replace = {f"nats-route://nats-{m}:6222": f"nats-route://127.0.0.1:{routes[m]}" for m in (1, 2, 3)}
        replace |= {
            "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{clients[n]}",
            "http: 0.0.0.0:8222": f"http: 127.0.0.1:{monitors[n]}",
            "listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{routes[n]}",
        }
        config = deployable_copy(DEPLOY_NATS / "cluster" / f"nats-{n}.conf", folder / f"nats-{n}", tls, replace)
        servers.append(server := ConfigServer(config, f"http://127.0.0.1:{monitors[n]}"))
        try:
            server.start(timeout_s=30.0)
        except RuntimeError as exc:
            if "address already in use" in str(exc):
                raise PortTakenError(str(exc)[-300:]) from exc
            raise
    return clients


async def _declare_when_the_cluster_is_up(nc: NatsClient, decls: Any) -> list[str]:
    """Apply ``decls`` once the cluster has elected its JetStream meta leader (retrying meanwhile)."""
    async with asyncio.timeout(90):
        while True:
            try:
                report = await apply_declarations(nc.jetstream(timeout=10.0), decls)
                return report.created + report.unchanged + report.updated
            except (nats.errors.Error, TimeoutError) as exc:
                if "unavailable" not in str(exc).lower() and not isinstance(exc, TimeoutError):
                    raise
                await asyncio.sleep(0.2)
