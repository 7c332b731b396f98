"""Settings for every service, read from ``GPURELAY_*`` environment variables.

One base class holds what all services share (and :class:`ApiKeySettings`, the key cache of the
gateway and the notifier); each service's own class lives beside it (``services/gateway/settings.py``,
``services/dispatcher/settings.py``, ``services/notifier/settings.py``), and each workload's beside
the workload (``modal_workers/splat/settings.py``, ``modal_workers/nerf/settings.py``). Secrets are
``SecretStr`` (never printed, never logged). Outside the ``dev`` and ``test`` profiles a
placeholder secret is refused at start-up.

A CLI command also reads ``<data dir>/dev.env``, written by ``gpurelay dev`` (see
:func:`load_settings`); real environment variables win over that file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.quotas import TenantQuota
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.config import MAX_FILE_STORE

PLACEHOLDER_PREFIX = "dev-insecure-"
"""Every default secret starts with this; such a value is refused outside dev and test."""

Profile = Literal["dev", "test", "prod"]
WS_MAX_MESSAGE_BYTES = 16 * 1024
SYNC_INTERVAL_PATTERN = r"^(always|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"
"""JetStream's ``sync_interval``: ``always``, or a Go duration (``120s``, ``2m``, ``1h30m``)."""
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
    nats_user: str | None = Field(
        default=None, description="The NATS user this service connects as (its role's; unset: no authentication)."
    )
    nats_password: SecretStr | None = Field(default=None, description="That user's password.")
    nats_tls_ca_file: Path | None = Field(
        default=None, description="CA certificate(s) of the NATS servers: connect over TLS, verifying them."
    )
    nats_tls_cert_file: Path | None = Field(
        default=None, description="Client certificate for servers that verify clients (with nats_tls_key_file)."
    )
    nats_tls_key_file: Path | None = Field(default=None, description="The client certificate's private key.")
    nats_sync_interval: str = Field(
        default="always",
        pattern=SYNC_INTERVAL_PATTERN,
        description="The embedded nats-server's (gpurelay dev) JetStream fsync: always (every write, before "
        "its ack), or a period such as 120s (NATS' default: acknowledged writes of the last period may be lost "
        "on power loss or an OS crash).",
    )
    nats_max_file_store: int = Field(
        default=MAX_FILE_STORE,
        gt=0,
        description="The embedded nats-server's (gpurelay dev) JetStream file store limit in bytes; the "
        "streams' byte caps must fit in it.",
    )
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
    quota_subject_max_running_per_kind: int | None = Field(
        default=None, ge=1, description="Default per end user (subject): attempts of one kind running at once."
    )
    quota_subject_max_queued: int | None = Field(
        default=None, ge=0, description="Default per end user: jobs waiting for a slot; beyond it submit answers 429."
    )
    quota_subject_gpu_seconds_per_day: float | None = Field(
        default=None, ge=0, description="Default per end user: GPU-seconds per UTC day; a job beyond it is refused."
    )
    quota_cache_s: float = Field(
        default=1.0, ge=0,
        description="Quotas read from KV are cached this long where the watched view cannot answer; 0: neither.",
    )  # fmt: skip

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
            subject_max_running_per_kind=self.quota_subject_max_running_per_kind,
            subject_max_queued=self.quota_subject_max_queued,
            subject_gpu_seconds_per_day=self.quota_subject_gpu_seconds_per_day,
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
