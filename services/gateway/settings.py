"""The gateway's settings (``GPURELAY_*``): the shared base, the API key cache, and what the public
API, uploads, robots, sessions and the dashboard read."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from contracts.specs.session_params import VLM_DEFAULT_MODEL
from services.common.config import PLACEHOLDER_PREFIX, ApiKeySettings


class GatewaySettings(ApiKeySettings):
    """The public REST API."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_body_bytes: int = Field(default=1024**2, gt=0)
    allowed_content_types: list[str] = Field(
        default_factory=lambda: [
            "video/mp4",
            "video/quicktime",
            "video/webm",
            "video/x-matroska",
            "video/x-msvideo",
            "image/jpeg",
            "image/png",
            "application/zip",
        ]
    )
    allow_url_inputs: bool = False
    ingest_nats_user: str | None = Field(
        default=None,
        description="The NATS user the ingest route publishes Modal workers' events as (the worker role's; unset: "
        "the gateway's own, which may not publish them when the server has users).",
    )
    ingest_nats_password: SecretStr | None = Field(default=None, description="That user's password.")
    stream_token_ttl_s: int = Field(default=900, gt=0, le=86_400, description="Lifetime of SSE stream tokens.")
    dashboard_session_ttl_s: int = Field(
        default=8 * 3600, ge=60, le=30 * 86_400, description="The dashboard's sign-in cookie lives this long (s)."
    )
    dashboard_token_ttl_s: int = Field(
        default=900, ge=30, le=86_400, description="Lifetime of the short API token a dashboard page holds (s)."
    )
    dashboard_stream_idle_s: float = Field(
        default=60,
        ge=0,
        le=3600,
        description="A dashboard page takes its event stream or session socket as dead after this long with "
        "neither a message nor a keep-alive (4 of the notifier's 15 s) and opens it again (s; 0: never).",
    )
    upload_url_ttl_s: int = Field(
        default=300, ge=1, le=86_400, description="A pre-signed upload PUT lives this long, plus the sending time."
    )
    upload_url_min_bytes_per_s: int = Field(
        default=1024**2, ge=1, description="Slowest upload rate granted time in the PUT's lifetime (bytes/s)."
    )
    upload_cache_max: int = Field(
        default=10_000,
        ge=1,
        description="Upload records a gateway keeps, of each: completed (submits), pending (their complete).",
    )
    upload_sha256_max_bytes: int = Field(
        default=64 * 1024**2, ge=0, description="Uploads up to this size are hashed at complete (0: never)."
    )
    route_table: Path = Field(default=Path("deploy/routes.yaml"), description="The route table (GET /v1/kinds).")
    route_profile: Literal["dev", "prod"] = "dev"
    token_max_ttl_s: int = Field(
        default=3600, ge=60, le=86_400, description="The longest lifetime POST /v1/tokens grants (s)."
    )
    token_default_ttl_s: int = Field(
        default=900, ge=30, le=86_400, description="A minted token's lifetime when the request names none (s)."
    )
    bulk_cancel_max: int = Field(
        default=1000, ge=1, le=1000, description="Jobs one POST /v1/jobs:cancel cancels at most."
    )
    joints_page_max: int = Field(
        default=1000, ge=1, le=10_000, description="Samples one page of a robot's joint history holds at most."
    )
    usage_max_jobs: int = Field(
        default=100_000, ge=1, description="Job records GET /v1/usage reads at most (the answer says when it stopped)."
    )
    tenant_cors_max_origins: int = Field(default=20, ge=1, le=1000, description="Origins one tenant may allow.")
    ingest_token_secret: SecretStr = SecretStr(PLACEHOLDER_PREFIX + "ingest-secret")
    ingest_max_events: int = Field(default=500, ge=1, le=10_000, description="Events per ingest request.")
    webhook_max_endpoints: int = Field(default=100, ge=1, description="Webhook endpoints per tenant.")

    robot_joint_count: int = Field(default=6, ge=1, le=32, description="Joints per sample (6: SO-100/101).")
    robot_max_batch: int = Field(default=1000, ge=1, le=1000, description="Most samples in one POST.")
    robot_latest_flush_ms: float = Field(
        default=100.0, ge=0, le=10_000, description="Coalesce KV robots writes (latest wins); 0: no."
    )
    robot_latest_max_pending: int = Field(
        default=10_000, ge=1, description="Unwritten latest samples held; beyond, the oldest is written at once."
    )
    robot_max_per_tenant: int = Field(
        default=1000, ge=1, description="Distinct robots per tenant (429 beyond); a silent robot leaves with its TTL."
    )
    robot_admit_cache_max: int = Field(default=100_000, ge=1, description="Robots remembered as admitted.")
    robot_admit_cache_s: float = Field(
        default=60.0, gt=0, le=3600, description="How long an admitted robot skips the per-tenant count (s)."
    )
    robot_confirm_every: int = Field(
        default=1000, ge=1, le=5000, description="Core-published samples between two awaited JetStream acks."
    )
    robot_confirm_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="How long an awaited JetStream ack of samples may take before a 503 (s)."
    )
    robot_ws_ack_every: int = Field(default=500, ge=1, description="WebSocket: ack after this many messages.")
    robot_ws_ack_ms: float = Field(default=1000.0, gt=0, description="WebSocket: ack at least every N ms.")
    robot_ws_auth_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="WebSocket: an API key must arrive within this (s), else 1008."
    )
    session_frame_max_bytes: int = Field(
        default=8 * 1024**2, ge=1024, le=64 * 1024**2, description="Largest frame a session takes (HTTP and WebSocket)."
    )
    session_max_frames_per_s: float = Field(default=60.0, gt=0, le=1000, description="Frames a second per session.")
    session_cache_max: int = Field(
        default=10_000, ge=1, description="Sessions whose counters, rate buckets and records a gateway keeps."
    )
    session_record_cache_s: float = Field(
        default=1.0, ge=0, le=60, description="How long a session's record is reused before it is read again."
    )
    session_feed_buffer: int = Field(
        default=16, ge=1, le=1024, description="Frames the feed socket holds for a worker that falls behind."
    )
    session_feed_restored_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024 * 1024, le=1024 * 1024 * 1024,
        description="Bytes of restored frames (a resumed session's memory) the feed socket holds for its worker.",
    )  # fmt: skip
    session_compat_ttl_s: float = Field(
        default=48 * 3600.0, gt=0, description="The seed routes' capability URL outlives its session by this."
    )
    session_stop_wait_s: float = Field(
        default=30.0, ge=0, le=600, description="The seed's /stop-training waits this long for the final outputs."
    )
    vlm_model: str = Field(
        default=VLM_DEFAULT_MODEL,
        description="The VLM a vlm session runs when it names none (a hub id or a local directory); "
        "set the workers' GPURELAY_VLM_MODEL to the same.",
    )
    vlm_models: list[str] = Field(
        default_factory=list,
        description="Other models a vlm session may name (a JSON list); others are refused with 422. "
        "Set the workers' GPURELAY_VLM_MODELS to the same.",
    )

    @field_validator("vlm_model", mode="before")
    @classmethod
    def _default_vlm_model(cls, value: object) -> object:
        """Read as the workers read it: surrounding blanks ignored, an empty value is the default."""
        return (value.strip() or VLM_DEFAULT_MODEL) if isinstance(value, str) else value
