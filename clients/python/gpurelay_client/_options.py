"""A client's settings, shared by both clients: where the API is, the credential, limits.

``base_url`` defaults to ``GPURELAY_URL`` and the credential to ``GPURELAY_API_KEY``. ``api_key`` is
a tenant's key (``gr_...``); ``token`` a short-lived scoped token (``tokens.create``, a dashboard
page's): both go as ``Authorization: Bearer``, never in a URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlencode

from gpurelay_client._core import segment
from gpurelay_client._errors import GpurelayError

VERSION = "0.1.0"
USER_AGENT = f"gpurelay-python/{VERSION}"


@dataclass(frozen=True)
class ClientOptions:
    """What both clients are made from."""

    base_url: str
    credential: str | None
    timeout: float
    max_retries: int
    events_url: str
    stream_max_reconnects: int
    stream_idle_timeout: float = 60.0
    """Seconds an event stream may stay silent before it is taken as cut and resumed: the notifier sends a
    keep-alive every 15 s, so a longer silence is a connection that died without closing (a host gone,
    a partition), on which a read would otherwise wait for good."""

    @classmethod
    def make(
        cls,
        base_url: str | None,
        api_key: str | None,
        token: str | None,
        timeout: float,
        max_retries: int,
        events_url: str | None,
        stream_max_reconnects: int,
        stream_idle_timeout: float = 60.0,
    ) -> ClientOptions:
        """Resolve the arguments (and the environment); a :class:`GpurelayError` for a contradiction."""
        if api_key is not None and token is not None:
            raise GpurelayError("pass api_key= or token=, not both")
        url = base_url or os.environ.get("GPURELAY_URL")
        if not url:
            raise GpurelayError("no base_url: pass Client(base_url) or set GPURELAY_URL")
        if max_retries < 0 or timeout <= 0 or stream_idle_timeout <= 0:
            raise GpurelayError("max_retries must be >= 0, timeout and stream_idle_timeout > 0")
        credential = api_key if api_key is not None else token
        if credential is None:
            credential = os.environ.get("GPURELAY_API_KEY") or None
        url = url.rstrip("/")
        events = (events_url or os.environ.get("GPURELAY_EVENTS_URL") or url).rstrip("/")
        return cls(url, credential, timeout, max_retries, events, stream_max_reconnects, stream_idle_timeout)

    def stream_read_s(self, left: float | None) -> float:
        """How long one read of an event stream may wait: :attr:`stream_idle_timeout`, or the ``left``
        of a caller's deadline when that is sooner."""
        return self.stream_idle_timeout if left is None else min(left, self.stream_idle_timeout)

    def headers(self) -> dict[str, str]:
        """Headers of every API request."""
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.credential:
            headers["Authorization"] = f"Bearer {self.credential}"
        return headers

    def ws_headers(self) -> dict[str, str]:
        """Headers of a WebSocket handshake."""
        return {k: v for k, v in self.headers().items() if k != "Accept"}

    def ws_url(self, path: str, query: dict[str, str] | None = None) -> str:
        """``ws(s)://`` URL of ``path`` under the base URL."""
        base = self.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}{path}" + (f"?{urlencode(query)}" if query else "")

    def job_events_url(self, job_id: str) -> str:
        """A job's SSE URL (on ``events_url`` when the notifier has its own origin)."""
        return f"{self.events_url}/v1/jobs/{segment(job_id)}/events"

    def session_events_url(self, session_id: str) -> str:
        """A session's SSE URL (on ``events_url``, as a job's)."""
        return f"{self.events_url}/v1/sessions/{segment(session_id)}/events"
