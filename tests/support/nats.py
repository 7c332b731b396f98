"""NATS in tests: connecting as a stack's ``dev.env`` says, and the server's JetStream API audit advisories."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from services.common.config import BaseServiceSettings
from services.common.nats.identity import identity_options


async def connect_env(env: Mapping[str, str], **options: Any) -> NatsClient:
    """A connection to the stack ``env`` (its ``dev.env`` values) describes: its NATS URL, as its user
    (``gpurelay dev``'s operator) where it names one."""
    settings = BaseServiceSettings(
        nats_url=env["GPURELAY_NATS_URL"],
        nats_user=env.get("GPURELAY_NATS_USER"),
        nats_password=env.get("GPURELAY_NATS_PASSWORD"),
    )
    return await nats.connect(settings.nats_servers, **identity_options(settings), **options)


@dataclass
class ApiAudit:
    """The JetStream API requests the server reports (its ``api_audit`` advisories), by request subject."""

    subjects: list[str] = field(default_factory=list)

    @classmethod
    async def start(cls, nc: NatsClient) -> ApiAudit:
        """Record every API request from now on (flushed, so nothing after this call is missed)."""
        audit = cls()

        async def on_advisory(msg: Msg) -> None:
            audit.subjects.append(str(json.loads(msg.data).get("subject", "")))

        await nc.subscribe("$JS.EVENT.ADVISORY.API", cb=on_advisory)
        await nc.flush()
        return audit

    def naming(self, consumer: str) -> list[str]:
        """The requests whose subject names ``consumer`` (info, create, delete, ...)."""
        return [s for s in self.subjects if consumer in s.split(".")]

    def creations(self, consumer: str) -> list[str]:
        """The requests that created (or updated) ``consumer``."""
        return [s for s in self.naming(consumer) if ".CREATE." in s]
