"""Settings for every service, read from ``GPURELAY_*`` environment variables.

One base class holds what all services share; each service adds its own class. Secrets are
``SecretStr`` (never printed, never logged). Outside the ``dev`` and ``test`` profiles a
placeholder secret is refused at start-up.

A CLI command also reads ``<data dir>/dev.env``, written by ``gpurelay dev`` (see
:func:`load_settings`); real environment variables win over that file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.quotas import TenantQuota
from contracts.specs.session_params import VLM_DEFAULT_MODEL
from contracts.subjects import Namespace, Subjects

PLACEHOLDER_PREFIX = "dev-insecure-"
"""Every default secret starts with this; such a value is refused outside dev and test."""

Profile = Literal["dev", "test", "prod"]
WS_MAX_MESSAGE_BYTES = 16 * 1024
"""Default WebSocket message cap: a joint sample or a first auth message is under 1 KiB."""


def nats_servers(url: str) -> list[str]:
    """The servers of a NATS URL setting: one URL, or several separated by commas (a cluster's nodes)."""
    return [server.strip() for server in url.split(",") if server.strip()]


class BaseServiceSettings(BaseSettings):
    """What every service reads: profile, NATS, storage, signing, logging."""

    model_config = SettingsConfigDict(env_prefix="GPURELAY_", extra="ignore", frozen=True)

    profile: Profile = "dev"
    data_dir: Path = Path(".gpurelay")
    namespace: str = Field(default="", description="Prefix isolating this deployment on a shared NATS.")

    url: str = Field(default="http://127.0.0.1:8000", description="The gateway's public base URL.")
    api_key: SecretStr | None = Field(default=None, description="The CLI's API key.")
    events_url: str | None = Field(default=None, description="Base URL of the SSE routes (default: url).")

    nats_url: str = Field(
        default="nats://127.0.0.1:4222", description="The NATS server, or a cluster's servers separated by commas."
    )
    nats_connect_timeout_s: float = Field(default=5.0, gt=0)
    nats_replicas: int = Field(
        default=1, ge=1, le=5, description="Copies of every stream and KV bucket on a NATS cluster (3 on three nodes)."
    )
    frames_max_bytes: int = Field(default=2 * 1024**3, gt=0, description="Byte cap of the FRAMES stream.")
    webhook_queue_max_msgs: int = Field(
        default=100_000, ge=1, description="Deliveries waiting per webhook endpoint; more are dead-lettered."
    )
    webhook_queue_max_bytes: int = Field(
        default=2 * 1024**3, gt=0, description="Bytes waiting in all webhook delivery queues; more are dead-lettered."
    )
    telemetry_max_bytes: int = Field(
        default=4 * 1024**3, gt=0, description="Byte cap of the TELEMETRY stream (the oldest samples go first)."
    )
    robot_latest_ttl_s: float = Field(
        default=86_400.0, ge=1, description="KV robots forgets a robot this long after its latest sample."
    )

    storage_backend: Literal["local", "s3"] = "local"
    storage_bucket: str = "gpurelay"
    storage_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint clients reach, used in pre-signed URLs (default: s3_endpoint_url).",
    )
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    signing_secret: SecretStr = SecretStr(PLACEHOLDER_PREFIX + "signing-secret")
    webhook_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts, IPs or CIDRs exempt from the webhook SSRF guard (dev and tests only).",
    )
    webhook_allow_http: bool = Field(
        default=False, description="Allow http:// webhook URLs to public hosts (allowlisted ones may always)."
    )
    signed_url_ttl_s: int = Field(default=3600, gt=0, le=7 * 24 * 3600)

    ws_max_message_bytes: int = Field(
        default=WS_MAX_MESSAGE_BYTES,
        ge=1024,
        le=16 * 1024**2,
        description="Largest WebSocket message a server reads; a larger frame closes the socket (1009) unread.",
    )

    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:3000"], description="Browser origins allowed (no '*' outside dev)."
    )

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    quota_max_running_per_kind: int | None = Field(
        default=None, ge=1, description="Default per tenant: attempts of one kind running at once (unset: no limit)."
    )
    quota_max_queued: int | None = Field(
        default=None, ge=0, description="Default per tenant: jobs waiting for a slot; beyond it submit answers 429."
    )
    quota_gpu_seconds_per_day: float | None = Field(
        default=None, ge=0, description="Default per tenant: GPU-seconds per UTC day; a job beyond it is refused."
    )
    concurrency_key_limit: int = Field(
        default=1, ge=1, description="Default per tenant: attempts running at once per spec concurrency_key."
    )
    quota_cache_s: float = Field(default=1.0, ge=0, description="A change in KV quotas applies within this long.")

    metrics_enabled: bool = Field(
        default=True, description="Serve GET /metrics (Prometheus text, no API key): keep it off the public proxy."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP base URL traces are exported to (…/v1/traces); unset: OTEL_EXPORTER_OTLP_ENDPOINT, "
        "else no tracing.",
    )
    trace_sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of new traces kept (a child follows its parent's choice)."
    )

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_prod(self) -> BaseServiceSettings:
        if self.profile != "dev" and "*" in self.cors_origins:
            raise ValueError("GPURELAY_CORS_ORIGINS may not contain '*' outside the dev profile")
        if self.profile in ("dev", "test"):
            return self
        for name, value in self:
            if isinstance(value, SecretStr) and value.get_secret_value().startswith(PLACEHOLDER_PREFIX):
                raise ValueError(
                    f"GPURELAY_{name.upper()} still holds the development placeholder; "
                    f"set a real secret for profile {self.profile!r}"
                )
        return self

    @property
    def quota_defaults(self) -> TenantQuota:
        """The deployment's default tenant quota (KV ``quotas`` overrides it per tenant)."""
        return TenantQuota(
            max_running_per_kind=self.quota_max_running_per_kind,
            max_queued=self.quota_max_queued,
            gpu_seconds_per_day=self.quota_gpu_seconds_per_day,
            concurrency_key_limit=self.concurrency_key_limit,
        )

    @property
    def ns(self) -> Namespace:
        """The NATS namespace of this deployment."""
        return Namespace(self.namespace)

    @property
    def nats_servers(self) -> list[str]:
        """The NATS servers of :attr:`nats_url` (one, or a cluster's), in order."""
        return nats_servers(self.nats_url)

    @property
    def subjects(self) -> Subjects:
        """Subject builders bound to this deployment's namespace."""
        return Subjects(self.ns)

    @property
    def local_storage_dir(self) -> Path:
        """Where the ``local`` storage backend keeps its objects."""
        return self.data_dir / "blobs"


class ApiKeySettings(BaseServiceSettings):
    """Settings of the services that verify API keys (gateway, notifier): the key cache."""

    api_key_cache_s: float = Field(
        default=60.0, ge=0, le=3600, description="Cache verified API keys (s), kept true by a KV watch; 0: never."
    )
    api_key_cache_max_entries: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Verified API keys cached at most (more: the cache restarts)."
    )


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
    stream_token_ttl_s: int = Field(default=900, gt=0, le=86_400, description="Lifetime of SSE stream tokens.")
    dashboard_session_ttl_s: int = Field(
        default=8 * 3600, ge=60, le=30 * 86_400, description="The dashboard's sign-in cookie lives this long (s)."
    )
    dashboard_token_ttl_s: int = Field(
        default=900, ge=30, le=86_400, description="Lifetime of the short API token a dashboard page holds (s)."
    )
    upload_url_ttl_s: int = Field(
        default=300, ge=1, le=86_400, description="A pre-signed upload PUT lives this long, plus the sending time."
    )
    upload_url_min_bytes_per_s: int = Field(
        default=1024**2, ge=1, description="Slowest upload rate granted time in the PUT's lifetime (bytes/s)."
    )
    upload_sha256_max_bytes: int = Field(
        default=64 * 1024**2, ge=0, description="Uploads up to this size are hashed at complete (0: never)."
    )
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


class DispatcherSettings(BaseServiceSettings):
    """Job state, routing and backends."""

    host: str = "127.0.0.1"
    port: int = Field(default=8002, ge=0, le=65535, description="Health endpoint of `gpurelay dispatcher`.")
    route_table: Path = Path("deploy/routes.yaml")
    route_profile: Literal["dev", "prod"] = "dev"
    local_pool_size: int = Field(default=2, ge=1, le=64)
    local_workers_die_with_dispatcher: bool = Field(
        default=False,
        description="Pool workers end when the dispatcher dies (gpurelay dev, whose NATS dies with it); "
        "else a busy worker finishes its attempt and reports straight to NATS.",
    )
    local_worker_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment the local pool's workers get on top of the dispatcher's "
        "(gpurelay dev: the synthetic arm's URDF for splat sessions).",
    )
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    heartbeat_misses: int = Field(default=3, ge=1)
    artifact_retention_hours: float = Field(default=48.0, gt=0)
    ingest_token_secret: SecretStr = SecretStr(PLACEHOLDER_PREFIX + "ingest-secret")
    modal_environment: str | None = None
    event_ack_wait_s: float = Field(default=30.0, gt=0, description="Redelivery of an un-acked job event.")
    ticket_ack_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="A held dispatch ticket is re-adopted this long after its holder died.",
    )
    retention_sweep_interval_s: float = Field(default=3600.0, gt=0)
    event_max_deliver: int = Field(
        default=5, ge=1, le=1000, description="Deliveries of a job or upload event before it is dead-lettered."
    )
    event_retry_delay_s: float = Field(
        default=0.2, gt=0, description="Redelivery delay after a failed event (doubled each time, up to its ack wait)."
    )
    ticket_max_deliver: int = Field(
        default=20, ge=2, le=1000, description="Deliveries of a dispatch ticket (adoptions too) before dead letter."
    )
    ticket_retry_delay_s: float = Field(default=1.0, gt=0, description="Redelivery delay after a failed ticket.")
    created_republish_after_s: float = Field(
        default=60.0, gt=0, description="A record still `created` this long with no job.created gets it published."
    )
    created_sweep_interval_s: float = Field(default=15.0, gt=0, description="How often such records are looked for.")
    tenant_weights: dict[str, float] = Field(
        default_factory=dict,
        description='Fair-share weight per tenant (JSON, e.g. {"acme": 3}); a kind\'s slots are shared by weight.',
    )
    scheduling_policy: Literal["fair", "fifo"] = Field(
        default="fair", description="fair: weighted fair share, then priority; fifo: oldest queued first (a baseline)."
    )
    queue_sweep_interval_s: float = Field(
        default=0.5, gt=0, description="How often a replica gives due queued jobs that lack a dispatch ticket one."
    )
    tenant_weight_default: float = Field(default=1.0, gt=0, description="The weight of a tenant not in tenant_weights.")
    queue_position_top: int = Field(
        default=10, ge=0, le=1000,
        description="job.position is sent when a job is queued, and each time it moves up while among the first N "
        "of its tenant's queue of the kind (0: only when queued).",
    )  # fmt: skip
    queue_position_interval_s: float = Field(
        default=1.0, ge=0, description="Queue positions of one tenant's kind are updated at most this often."
    )
    tally_flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often a replica writes the GPU-seconds (daily quota) and run times (ETA) of ended attempts.",
    )
    eta_window: int = Field(default=50, ge=1, le=1000, description="Run times kept per kind and input size (ETA).")
    priority_ageing_s: float = Field(
        default=60.0, ge=0, description="A queued job gains one priority level per this many seconds waited (ageing)."
    )
    fold_partitions: int = Field(
        default=8,
        ge=0,
        le=64,
        description="Partitions of the fold by job (parallel, each job in order); 0: one serial fold consumer.",
    )
    fold_batch: int = Field(
        default=512,
        ge=1,
        le=10_000,
        description="Events a replica folds per batch of one partition (its consumer's max_ack_pending).",
    )
    fold_pin_hold_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long a replica keeps a fold partition before it lets another take it (0: after each batch).",
    )
    fold_record_cache: int = Field(
        default=1_000,
        ge=0,
        le=100_000,
        description="Job records a replica keeps per fold partition while it holds the partition (0: none).",
    )


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
    webhook_endpoint_concurrency: int = Field(
        default=32, ge=1, le=256, description="Webhook attempts in flight per endpoint queue (one per job at a time)."
    )
    webhook_endpoint_rate_per_s: float = Field(
        default=0.0, ge=0, description="Webhook attempts per second per endpoint queue (0: no limit)."
    )
    webhook_lease_ttl_s: float = Field(
        default=5.0,
        gt=0,
        description="Replicas: the fan-out and each delivery queue run in one notifier at a time, under a lease "
        "renewed every third of this; a dead holder's work moves to another replica after it.",
    )


class SplatSettings(BaseSettings):
    """The splat workload's deployment defaults (``GPURELAY_SPLAT_*``), read by its worker process.

    The seed's clients send no robot description, camera mount or intrinsics: a session's params
    override each of these, else they come from here. ``urdf`` names a file under ``robots_dir``
    (default: the URDFs shipped in ``modal_workers/assets``) or is an absolute path the operator
    chose; ``None`` means no forward kinematics (only frames sent with a pose are used).
    ``gpurelay dev`` sets ``GPURELAY_SPLAT_URDF=synthetic_arm.urdf`` for its workers.
    """

    model_config = SettingsConfigDict(env_prefix="GPURELAY_SPLAT_", extra="ignore", frozen=True)

    urdf: str | None = Field(default=None, description="The robot's URDF (a name under robots_dir, or a path).")
    robots_dir: Path | None = Field(default=None, description="Where session params may pick a URDF by name.")
    camera_link: str = Field(default="camera_link", min_length=1, description="The link the camera is on.")
    camera_xyz: tuple[float, float, float] = Field(default=(0.0, 0.0, 0.0), description="Camera→link offset (m).")
    camera_rpy: tuple[float, float, float] = Field(default=(0.0, 0.0, 0.0), description="Camera→link rpy (rad).")
    hfov_deg: float = Field(default=60.0, gt=0, lt=180, description="Horizontal field of view, unless fx/fy are set.")
    fx: float | None = Field(default=None, gt=0, description="Focal length in pixels at the frames' resolution.")
    fy: float | None = Field(default=None, gt=0)
    cx: float | None = Field(default=None, ge=0, description="Principal point (default: the image centre).")
    cy: float | None = Field(default=None, ge=0)
    near_m: float = Field(default=0.05, gt=0, description="Nearest scene depth seen by the camera (new Gaussians).")
    far_m: float = Field(default=2.0, gt=0, description="Farthest scene depth seen by the camera.")
    cpu_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="torch threads of a session on the CPU (on a small shared machine "
        "more threads mostly wait for each other).",
    )
    cpu_max_gaussians: int = Field(
        default=4000,
        ge=100,
        le=10_000_000,
        description="On the CPU a session keeps at most this many Gaussians "
        "(or its max_gaussians if lower): the pure-torch rasterizer's cost grows with them.",
    )
    max_image_side: int | None = Field(
        default=None, ge=16, le=8192, description="Frames are shrunk to this longest side (None: 160 CPU, 1024 CUDA)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SplatSettings:
        if (self.fx is None) != (self.fy is None):
            raise ValueError("set both GPURELAY_SPLAT_FX and GPURELAY_SPLAT_FY, or neither")
        if self.near_m >= self.far_m:
            raise ValueError("GPURELAY_SPLAT_NEAR_M must be below GPURELAY_SPLAT_FAR_M")
        return self


class NerfSettings(BaseSettings):
    """The nerf workload's limits and tuning (``GPURELAY_NERF_*``), read by its worker processes.

    The archive caps bound what a zip of photos may unpack to (zip bombs): actual bytes are counted
    while extracting, never trusted from the zip's directory.
    """

    model_config = SettingsConfigDict(env_prefix="GPURELAY_NERF_", extra="ignore", frozen=True)

    max_archive_bytes: int = Field(
        default=4 * 1024**3, ge=1024, description="Most bytes a photo archive may unpack to, in all."
    )
    max_archive_files: int = Field(default=1000, ge=1, le=100_000, description="Most entries in a photo archive.")
    max_image_pixels: int = Field(default=60_000_000, ge=64, description="Most pixels of one photo (its header).")
    min_images: int = Field(default=8, ge=2, le=10_000, description="Fewest photos a job needs.")
    max_images: int = Field(default=500, ge=2, le=10_000, description="Most photos a job may have.")
    exhaustive_max_images: int = Field(
        default=100, ge=2, le=10_000, description="Up to this many photos every pair is matched; above, sequentially."
    )
    sift_max_features: int = Field(default=8192, ge=256, le=65_536, description="SIFT features kept per photo.")
    sfm_mapping_trials: int = Field(
        default=3, ge=1, le=20, description="Incremental mapping runs (new seed each) while photos stay unregistered."
    )
    checkpoint_every: int = Field(default=1000, ge=1, description="Training iterations between checkpoints.")
    cpu_threads: int = Field(default=2, ge=1, le=256, description="torch threads when training on the CPU.")

    @model_validator(mode="after")
    def _consistent(self) -> NerfSettings:
        if self.min_images > self.max_images:
            raise ValueError("GPURELAY_NERF_MIN_IMAGES must not exceed GPURELAY_NERF_MAX_IMAGES")
        return self


S = TypeVar("S", bound=BaseServiceSettings)


def dev_env_path(data_dir: Path) -> Path:
    """``<data dir>/dev.env``, written by ``gpurelay dev`` once the stack is ready."""
    return Path(data_dir) / "dev.env"


def load_settings(cls: type[S], data_dir: Path | None = None, **overrides: Any) -> S:
    """Settings of ``cls`` from the environment, falling back to ``<data dir>/dev.env``."""
    probe = BaseServiceSettings()
    directory = data_dir if data_dir is not None else probe.data_dir
    env_file = dev_env_path(directory)
    if data_dir is not None:
        overrides.setdefault("data_dir", data_dir)
    return cls(_env_file=env_file if env_file.exists() else None, **overrides)
