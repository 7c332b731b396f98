"""The notifier in tests: its settings (loopback receivers, a fast retry schedule) and its served app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import SecretStr

from bench.harness.secrets import SIGNING_SECRET
from contracts.streams import JOBS
from contracts.subjects import Namespace
from services.notifier.settings import NotifierSettings
from services.notifier.sse.hub import HUB_DESCRIPTION, Hub
from services.notifier.state import NotifierState
from services.notifier.webhooks.fanout import FANOUT_DURABLE


def notifier_settings(nats_url: str, namespace: Namespace, data_dir: Path, **overrides: object) -> NotifierSettings:
    """Fast test settings: loopback allowed, a short retry schedule without jitter."""
    values: dict[str, object] = {
        "profile": "test",
        "data_dir": data_dir,
        "nats_url": nats_url,
        "namespace": namespace.name,
        "signing_secret": SecretStr(SIGNING_SECRET),
        "nats_connect_timeout_s": 2.0,
        "webhook_allow_hosts": ["127.0.0.1"],
        "webhook_retry_schedule_s": [0.0, 0.2, 0.2, 0.2],
        "webhook_retry_jitter": 0.0,
        "webhook_timeout_s": 2.0,
        "webhook_ack_wait_s": 3.0,
        "webhook_lease_ttl_s": 1.5,
        "sse_heartbeat_s": 1.0,
        "sse_send_timeout_s": 2.0,
        "sse_progress_max_per_s": 0.0,
    }
    values.update(overrides)
    return NotifierSettings(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Notifier:
    """The notifier app served on loopback."""

    settings: NotifierSettings
    app: FastAPI
    url: str


async def sse_streams(notifier: Notifier, js: JetStreamContext) -> int:
    """The SSE streams the notifier serves: a consumer on JOBS each (``sse_fanout="per_connection"``)
    or a tap each on its shared subscription (``"shared"``, whose one consumer is not counted)."""
    state: NotifierState | None = notifier.app.state.notifier
    if state is not None and state.hub is not None:
        return state.hub.connections
    infos = await js.consumers_info(notifier.settings.ns.stream(JOBS))
    return sum(1 for info in infos if not info.config.durable_name and info.config.description != HUB_DESCRIPTION)


async def fanout_consumer_exists(js: JetStreamContext, namespace: Namespace) -> bool:
    """Whether the notifier's webhook fan-out consumer exists (made at start-up, or made again)."""
    try:
        await js.consumer_info(namespace.stream(JOBS), FANOUT_DURABLE)
    except NotFoundError:
        return False
    return True


@contextlib.asynccontextmanager
async def shared_hub(
    nc: NatsClient, js: JetStreamContext, namespace: Namespace, heartbeat_s: float = 1.0
) -> AsyncIterator[Hub]:
    """A started SSE hub on the namespace's JOBS (reading ahead 64 events), stopped at the end."""
    hub = Hub(nc, js, namespace.stream(JOBS), namespace.subject(""), 64, heartbeat_s)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()
