"""gpurelay's Python client: ``Client`` (blocking) and ``AsyncClient`` (asyncio), the same surface::

    from gpurelay_client import Client

    with Client("https://gpurelay.example", api_key="gr_...") as client:
        job = client.jobs.run("lap_compare", inputs={"video": "lap.mp4"}, timeout=600)
        client.jobs.download_artifacts(job, "out/")
"""

from gpurelay_client._async_client import AsyncClient
from gpurelay_client._async_publisher import AsyncJointPublisher
from gpurelay_client._async_session import AsyncSession
from gpurelay_client._client import Client
from gpurelay_client._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BadRequest,
    ChecksumMismatch,
    Conflict,
    GpurelayError,
    InternalServerError,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    SessionClosed,
    SessionError,
    StreamError,
    Unauthorized,
    UnprocessableEntity,
    WebhookVerificationError,
)
from gpurelay_client._events import TERMINAL_EVENTS, Event
from gpurelay_client._joints import PublisherStats, joint_radians
from gpurelay_client._options import VERSION
from gpurelay_client._session_protocol import FrameAck
from gpurelay_client._sync_publisher import JointPublisher
from gpurelay_client._sync_session import Session
from gpurelay_client._tokens import CreatedToken
from gpurelay_client._webhooks import verify_webhook

__version__ = VERSION
__all__ = [
    "TERMINAL_EVENTS",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncJointPublisher",
    "AsyncSession",
    "BadRequest",
    "ChecksumMismatch",
    "Client",
    "Conflict",
    "CreatedToken",
    "Event",
    "FrameAck",
    "GpurelayError",
    "InternalServerError",
    "JobFailed",
    "JointPublisher",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PublisherStats",
    "RateLimited",
    "ServiceUnavailable",
    "Session",
    "SessionClosed",
    "SessionError",
    "StreamError",
    "Unauthorized",
    "UnprocessableEntity",
    "WebhookVerificationError",
    "joint_radians",
    "verify_webhook",
]
