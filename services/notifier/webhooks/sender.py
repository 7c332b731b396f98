"""One webhook attempt: sign with Standard Webhooks, POST through the SSRF guard, classify the answer.

Headers: ``webhook-id`` (the event id, the same on every attempt), ``webhook-timestamp`` (this
attempt) and ``webhook-signature`` (one ``v1,...`` per signing secret, space-separated, made by
the ``standardwebhooks`` library). Redirects are not followed (a 3xx is a failure); at most
64 KiB of the response body is read (and ignored); 2xx means delivered.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks import Webhook

from services.common.ssrf import SsrfError
from services.notifier.webhooks.http1 import MAX_IDLE_PER_ORIGIN, Http1Client, ProtocolError

USER_AGENT = "gpurelay-webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt got: an HTTP status, or an error with no response."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        """2xx."""
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        """A short reason for logs, state and dead letters."""
        if self.error:
            return self.error
        return f"HTTP {self.status}"


@functools.lru_cache(maxsize=1024)
def _webhook(secret: str) -> Webhook:
    """The signer of one secret (decoding the secret once)."""
    return Webhook(secret)


def sign_headers(secrets: Sequence[str], event_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed with every secret."""
    text = body.decode()
    signatures = " ".join(_webhook(secret).sign(event_id, now, text) for secret in secrets)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
    }


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class Sender:
    """Sends attempts with :class:`Http1Client` (keep-alive connections to SSRF-checked addresses)."""

    def __init__(
        self,
        allow_hosts: Sequence[str],
        *,
        allow_http: bool,
        timeout_s: float,
        pool_idle_s: float = 30.0,
        pool_max_idle: int = 256,
        pool_per_origin: int = MAX_IDLE_PER_ORIGIN,
    ) -> None:
        self.client = Http1Client(
            tuple(allow_hosts),
            allow_http,
            MAX_RESPONSE_BYTES,
            pool_idle_s=pool_idle_s,
            pool_max_idle=pool_max_idle,
            pool_per_origin=pool_per_origin,
        )
        self.timeout_s = timeout_s

    async def aclose(self) -> None:
        """Close the idle connections."""
        await self.client.aclose()

    async def send(self, url: str, secrets: Sequence[str], event_id: str, body: bytes) -> AttemptResult:
        """POST ``body`` to ``url``; never raises for network or HTTP failures."""
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **sign_headers(secrets, event_id, body, now),
        }
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.client.post(url, body, headers)
        except SsrfError as exc:
            return AttemptResult(status=None, error=f"refused by the SSRF guard: {exc.reason}")
        except TimeoutError:
            return AttemptResult(status=None, error="timed out")
        except (OSError, ProtocolError, asyncio.IncompleteReadError, ValueError) as exc:
            return AttemptResult(status=None, error=f"{type(exc).__name__}: {exc}"[:500])
        retry_after = None
        if response.status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        return AttemptResult(status=response.status, retry_after_s=retry_after)
