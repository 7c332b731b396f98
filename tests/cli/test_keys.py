"""``gpurelay keys`` against a real nats-server (the CLI runs its own loop: call it from a thread)."""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext
from typer.testing import CliRunner

from contracts.streams import KV_APIKEYS, Declarations
from contracts.subjects import Namespace
from services.cli.main import app
from services.common.auth.apikeys import ApiKeyStore
from services.common.nats.server.embedded import EmbeddedNats


@pytest.fixture
def env(nats_server: EmbeddedNats, namespace: Namespace) -> dict[str, str]:
    return {"GPURELAY_NATS_URL": nats_server.url, "GPURELAY_NAMESPACE": namespace.name}


async def test_create_then_revoke(
    env: dict[str, str], js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    runner = CliRunner()
    created = await asyncio.to_thread(
        runner.invoke, app, ["keys", "create", "--tenant", "acme", "--name", "ci"], env=env
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    store = ApiKeyStore(await js.key_value(namespace.bucket(KV_APIKEYS)))
    principal = await store.verify(key)
    assert principal is not None
    assert principal.tenant == "acme"

    listed = await asyncio.to_thread(
        runner.invoke, app, ["keys", "ls", "--tenant", "acme"], env={**env, "COLUMNS": "200"}
    )
    assert principal.key_id in listed.stdout
    assert key not in listed.stdout

    revoked = await asyncio.to_thread(runner.invoke, app, ["keys", "revoke", principal.key_id], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert await store.verify(key) is None
    missing = await asyncio.to_thread(runner.invoke, app, ["keys", "revoke", "ffffffffffffffff"], env=env)
    assert missing.exit_code == 1


def test_bad_tenant_is_refused(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["keys", "create", "--tenant", "a.b"], env=env)
    assert result.exit_code == 2
