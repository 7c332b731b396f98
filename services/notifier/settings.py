"""The notifier's settings (``GPURELAY_*``): the shared base, the API key cache, and what SSE and the
webhook deliveries read."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.config import ApiKeySettings


class NotifierSettings(ApiKeySettings):
    """SSE and webhooks."""

    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=0, le=65535)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    webhook_disable_after_exhausted: int = Field(default=5, ge=1)
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    sse_buffer: int = Field(default=256, ge=1)
    sse_send_timeout_s: float = Field(default=10.0, gt=0)
    sse_retry_ms: int = Field(default=3000, ge=0, description="The `retry:` hint sent to SSE clients.")
    sse_pull_heartbeat_s: float = Field(
        default=5.0,
        ge=0.1,
        le=10.0,
        description="Idle heartbeat of an SSE stream's pulls; two missed: its consumer is made anew (NATS restarted).",
    )
    sse_max_streams_per_tenant: int = Field(
        default=100, ge=1, description="Concurrent SSE streams per tenant in one notifier (more: 429)."
    )
    sse_progress_max_per_s: float = Field(
        default=10.0, ge=0, description="job.progress frames per second per job and client (0: all)."
    )
    webhook_retry_jitter: float = Field(default=0.1, ge=0, le=1, description="± fraction of each delay.")
    webhook_retry_after_max_s: float = Field(default=86_400.0, gt=0, description="Cap on Retry-After.")
    webhook_ack_wait_s: float = Field(
        default=60.0, gt=0, description="Redelivery of an unacked delivery after a crash (> timeout)."
    )
    webhook_deliveries_ttl_s: float = Field(default=3 * 86_400.0, gt=0, description="Delivery state TTL.")
    webhook_pool_idle_s: float = Field(
        default=30.0, gt=0, description="Idle keep-alive connections to webhook receivers are closed after (s)."
    )
    webhook_pool_max_idle: int = Field(
        default=256, ge=0, description="Idle keep-alive connections kept in all (least recently used closed first)."
    )
    metrics_max_endpoints: int = Field(
        default=50, ge=0, le=1000, description="Webhook endpoints with their own metrics label; later ones: 'other'."
    )
    sse_fanout: Literal["shared", "per_connection"] = Field(
        default="shared",
        description="SSE live tail: one JOBS consumer per process fanned out in memory (shared), or one per stream.",
    )
    sse_hub_buffer: int = Field(
        default=4096, ge=16, description="Events the shared SSE subscription reads ahead of its fan-out."
    )
    sse_catch_up_batch: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="Events an SSE stream's catch-up reads per direct-get batch at most (and never more than "
        "the room in its buffer, sse_buffer).",
    )
    webhook_endpoint_concurrency: int = Field(
        default=32, ge=1, le=256, description="Webhook attempts in flight per endpoint queue (one per job at a time)."
    )
    webhook_max_ack_pending: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="Deliveries one endpoint queue holds unacknowledged at most: attempting, waiting for a retry, "
        "or held behind an older one of their job (its consumer's max_ack_pending).",
    )
    webhook_delivered_memory: int = Field(
        default=16_384,
        ge=0,
        le=1_000_000,
        description="Queue messages this notifier delivered that it remembers (their stream sequences): one that "
        "comes back (its ack was lost, as in a partition) is acked again, not sent again (0: none remembered).",
    )
    webhook_endpoint_rate_per_s: float = Field(
        default=0.0, ge=0, description="Webhook attempts per second per endpoint queue (0: no limit)."
    )
    webhook_lease_ttl_s: float = Field(
        default=15.0,
        gt=0,
        description="Replicas: the fan-out and each delivery queue run in one notifier at a time, under a lease "
        "renewed every third of this; a dead holder's work moves to another replica after it.",
    )
