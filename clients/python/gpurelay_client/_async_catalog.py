"""``client.kinds`` and ``client.usage`` of the asyncio client (``_sync_catalog`` is the twin)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from gpurelay_client import _catalog
from gpurelay_client._models import KindList, UsageOut
from gpurelay_client._sync_catalog import GroupBy

if TYPE_CHECKING:
    from gpurelay_client._async_client import AsyncClient


class AsyncKinds:
    """``/v1/kinds``: the workloads the deployment runs."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._retries = client.options.max_retries

    async def list(self) -> KindList:
        """Each workload: session or job, its params' JSON Schema, inputs, result, GPUs, price per GPU-second."""
        return await self._client._run(_catalog.kinds_flow(self._retries))


class AsyncUsage:
    """``/v1/usage``: what the tenant (or a subject's token: its subject) ran and spent, and its quotas."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._retries = client.options.max_retries

    async def get(
        self,
        *,
        from_: datetime | None = None,
        to: datetime | None = None,
        group_by: GroupBy = "day",
        subject: str | None = None,
    ) -> UsageOut:
        """Jobs, sessions, GPU-seconds and cost per day, kind or subject over ``[from_, to)`` (default: the
        last 30 days), their total, and the quotas with today's use."""
        filters = {"from": from_, "to": to, "group_by": group_by, "subject": subject}
        return await self._client._run(_catalog.usage_flow(filters, self._retries))
