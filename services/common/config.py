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

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.subjects import Namespace, Subjects

PLACEHOLDER_PREFIX = "dev-insecure-"
"""Every default secret starts with this; such a value is refused outside dev and test."""

Profile = Literal["dev", "test", "prod"]


class BaseServiceSettings(BaseSettings):
    """What every service reads: profile, NATS, storage, signing, logging."""

    model_config = SettingsConfigDict(env_prefix="GPURELAY_", extra="ignore", frozen=True)

    profile: Profile = "dev"
    data_dir: Path = Path(".gpurelay")
    namespace: str = Field(default="", description="Prefix isolating this deployment on a shared NATS.")

    url: str = Field(default="http://127.0.0.1:8000", description="The gateway's public base URL.")
    api_key: SecretStr | None = Field(default=None, description="The CLI's API key.")

    nats_url: str = "nats://127.0.0.1:4222"
    nats_connect_timeout_s: float = Field(default=5.0, gt=0)
    frames_max_bytes: int = Field(default=2 * 1024**3, gt=0, description="Byte cap of the FRAMES stream.")

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
    signed_url_ttl_s: int = Field(default=3600, gt=0, le=7 * 24 * 3600)

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_prod(self) -> BaseServiceSettings:
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
    def ns(self) -> Namespace:
        """The NATS namespace of this deployment."""
        return Namespace(self.namespace)

    @property
    def subjects(self) -> Subjects:
        """Subject builders bound to this deployment's namespace."""
        return Subjects(self.ns)

    @property
    def local_storage_dir(self) -> Path:
        """Where the ``local`` storage backend keeps its objects."""
        return self.data_dir / "blobs"


class GatewaySettings(BaseServiceSettings):
    """The public REST API."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=lambda: ["http://localhost:3000"])
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
    ingest_token_secret: SecretStr = SecretStr(PLACEHOLDER_PREFIX + "ingest-secret")

    @model_validator(mode="after")
    def _no_wildcard_cors_in_prod(self) -> GatewaySettings:
        if self.profile != "dev" and "*" in self.cors_origins:
            raise ValueError("GPURELAY_CORS_ORIGINS may not contain '*' outside the dev profile")
        return self


class DispatcherSettings(BaseServiceSettings):
    """Job state, routing and backends."""

    route_table: Path = Path("deploy/routes.yaml")
    route_profile: Literal["dev", "prod"] = "dev"
    local_pool_size: int = Field(default=2, ge=1, le=64)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    heartbeat_misses: int = Field(default=3, ge=1)
    artifact_retention_hours: float = Field(default=48.0, gt=0)
    ingest_token_secret: SecretStr = SecretStr(PLACEHOLDER_PREFIX + "ingest-secret")
    modal_environment: str | None = None


class NotifierSettings(BaseServiceSettings):
    """SSE and webhooks."""

    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=0, le=65535)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    webhook_disable_after_exhausted: int = Field(default=5, ge=1)
    webhook_allow_hosts: list[str] = Field(
        default_factory=list, description="Hosts exempt from the SSRF guard (dev/tests)."
    )
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    sse_buffer: int = Field(default=256, ge=1)
    sse_send_timeout_s: float = Field(default=10.0, gt=0)


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
