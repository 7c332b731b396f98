"""NATS over TLS as a deployment option: a server's clients verify it against the CA the settings name, and
a loopback cluster's routes use mutual TLS (each node presents its certificate and checks the others')."""

from __future__ import annotations

import ssl
from pathlib import Path

import nats
import pytest

from services.common.config import BaseServiceSettings
from services.common.nats.connection import connect
from services.common.nats.identity import identity_options
from services.common.nats.server.cluster import NatsCluster, wait_jetstream
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.nats_deploy import make_certs, monitor


async def test_a_client_with_the_settings_ca_connects_over_tls_and_one_without_is_refused(tmp_path: Path) -> None:
    tls = make_certs(tmp_path / "certs")
    with EmbeddedNats(tmp_path / "nats", tls=tls, monitor_port=0) as server:
        assert server.url.startswith("tls://")
        assert server.monitor_url is not None
        nc = await connect(BaseServiceSettings(nats_url=server.url, nats_tls_ca_file=tls.ca_file), "tls-test")
        try:
            await nc.jetstream().account_info()
            connz = await monitor(server.monitor_url, "connz")
            [ours] = [c for c in connz["connections"] if c.get("name") == "gpurelay-tls-test"]
            assert ours.get("tls_version", "").startswith("1.")
        finally:
            await nc.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            await nats.connect(server.url, max_reconnect_attempts=0, allow_reconnect=False)


@pytest.mark.timeout(120)
async def test_a_loopback_cluster_with_tls_forms_its_routes_and_serves_jetstream(tmp_path: Path) -> None:
    tls = make_certs(tmp_path / "certs")
    with NatsCluster(tmp_path / "cluster", size=3, tls=tls) as cluster:
        settings = BaseServiceSettings(nats_url=cluster.url, nats_tls_ca_file=tls.ca_file)
        await wait_jetstream(cluster.url, **identity_options(settings))
        for node in cluster.nodes:
            assert node.monitor_url is not None
            varz = await monitor(node.monitor_url, "varz")
            assert varz["cluster"].get("tls_required") is True, node.server_name
            assert varz["cluster"].get("tls_verify") is True, node.server_name
            assert (await monitor(node.monitor_url, "routez"))["num_routes"] >= 2, node.server_name
