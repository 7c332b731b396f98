"""``client.sessions``, ``client.robots``, ``client.tokens`` and ``client.webhooks`` of the blocking
client (``_async_resources`` is the twin)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gpurelay_client import _catalog, _robots, _sessions, _tokens, _webhooks
from gpurelay_client._events import Event
from gpurelay_client._joints import Joints, Policy, ws_path
from gpurelay_client._models import (
    DeliveryList,
    FrameAccepted,
    JointHistory,
    JointsAccepted,
    JointSample,
    RobotList,
    SessionList,
    SessionOut,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
    WebhookList,
)
from gpurelay_client._session_protocol import FROM_THE_START, Frame, encode_frame
from gpurelay_client._sync_publisher import JointPublisher
from gpurelay_client._sync_session import Session
from gpurelay_client._tokens import CreatedToken
from gpurelay_client._uploads import sniff

if TYPE_CHECKING:
    from gpurelay_client._client import Client

SessionRef = str | SessionOut


def session_id(session: SessionRef) -> str:
    """The id of ``session``."""
    return session if isinstance(session, str) else session.id


class Sessions:
    """``/v1/sessions``: live sessions (a session is a job of kind ``splat`` or ``vlm``)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._retries = client.options.max_retries

    def start(
        self,
        kind: str,
        params: Mapping[str, Any] | None = None,
        *,
        robot_id: str | None = None,
        webhook: Mapping[str, Any] | str | None = None,
        idempotency_key: str | None = None,
    ) -> Session:
        """Start a session and open its socket, with every event of the session from its first."""
        retries = self._retries
        info = self._client._run(_sessions.start_flow(kind, params, robot_id, webhook, idempotency_key, retries))
        return Session(self._client, info, FROM_THE_START)

    def connect(self, session: SessionRef, *, after: int | None = None) -> Session:
        """Open the socket of a running session (events after stream sequence ``after``, else new ones)."""
        return Session(self._client, self.get(session), after)

    def stream(self, session: SessionRef, *, after: str | int | None = None) -> Iterator[Event]:
        """The session's events over SSE (``GET /v1/sessions/{id}/events``, no socket) from its first, or
        after stream sequence ``after``, to its terminal event; resumed after a drop."""
        return self._client._events(self._client.options.session_events_url(session_id(session)), after)

    def get(self, session: SessionRef) -> SessionOut:
        """A session's record: state, frame counts, figures, snapshot, result, cost."""
        return self._client._run(_sessions.get_flow(session_id(session), self._retries))

    def list(
        self,
        *,
        status: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        robot_id: str | None = None,
        subject: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SessionList:
        """One page of sessions, newest first, filtered; ``next_cursor`` asks for the next."""
        filters = {"status": status, "state": state, "kind": kind, "robot_id": robot_id, "subject": subject}
        return self._client._run(_catalog.sessions_page_flow({**filters, "limit": limit}, cursor, self._retries))

    def stop(self, session: SessionRef) -> SessionOut:
        """Ask the session to finish, over HTTP."""
        flow = _sessions.control_flow(session_id(session), "stop", self._retries)
        return self._client._run(flow)

    def reset(self, session: SessionRef) -> SessionOut:
        """Clear the session's model and counters, over HTTP."""
        flow = _sessions.control_flow(session_id(session), "reset", self._retries)
        return self._client._run(flow)

    def send_frame(
        self, session: SessionRef, frame: Frame, *, ts: float | None = None, idempotency_key: str | None = None
    ) -> FrameAccepted:
        """One frame over HTTP (the socket's :meth:`Session.send_frame` is the fast path). It carries
        ``idempotency_key`` (a fresh one when none is given), so a retry stores it once."""
        data = encode_frame(frame)
        content_type = sniff(data) or "image/jpeg"
        flow = _sessions.frame_flow(session_id(session), data, content_type, ts, idempotency_key, self._retries)
        return self._client._run(flow)


class Robots:
    """``/v1/robots/{id}/joints``: joint-angle telemetry."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._retries = client.options.max_retries

    def send_joints(
        self, robot_id: str, joint_angles: Joints, ts: float | datetime | None = None, *, seq: int | None = None
    ) -> JointsAccepted:
        """Publish one sample (radians in joint order, or a LeRobot observation dict; ``ts`` default now)."""
        body = _robots.joints_body(joint_angles, ts, seq)
        return self._client._run(_robots.send_flow(robot_id, body, self._retries))

    def send_joint_batch(
        self, robot_id: str, samples: Iterable[tuple[Joints, float | datetime | None]]
    ) -> JointsAccepted:
        """Publish ``(joint_angles, ts)`` samples, oldest first, in one request (stored before the answer)."""
        body = _robots.batch_body(samples)
        return self._client._run(_robots.send_flow(robot_id, body, self._retries))

    def latest(self, robot_id: str) -> JointSample:
        """The robot's newest sample."""
        return self._client._run(_robots.latest_flow(robot_id, self._retries))

    def list(self) -> RobotList:
        """The tenant's robots: each one's latest sample time, joint count and bound session."""
        return self._client._run(_catalog.robots_flow(self._retries))

    def joints(
        self,
        robot_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> JointHistory:
        """One page of the robot's stored samples, oldest first; ``next_cursor`` asks for the next."""
        window = {"since": since, "until": until, "limit": limit}
        return self._client._run(_catalog.joints_flow(robot_id, window, cursor, self._retries))

    def publisher(
        self,
        robot_id: str,
        *,
        max_pending: int = 1024,
        max_batch: int = 64,
        policy: Policy = "drop_oldest",
        block_timeout_s: float = 1.0,
    ) -> JointPublisher:
        """A started :class:`JointPublisher` for a control loop: ``publish`` never waits on the network."""
        return JointPublisher(
            self._client.options.ws_url(ws_path(robot_id)),
            self._client.options.ws_headers(),
            max_pending=max_pending,
            max_batch=max_batch,
            policy=policy,
            block_timeout_s=block_timeout_s,
        )


class Tokens:
    """``/v1/tokens``: short-lived scoped tokens for browsers and devices."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._retries = client.options.max_retries

    def create(
        self,
        scopes: Sequence[str],
        *,
        kinds: Sequence[str] | None = None,
        subject: str | None = None,
        robot_id: str | None = None,
        ttl_s: int = 900,
    ) -> CreatedToken:
        """Mint a token limited to ``scopes`` (and ``kinds``, a ``robot_id``), living ``ttl_s`` seconds."""
        retries = self._retries
        return self._client._run(_tokens.create_flow(scopes, kinds, subject, robot_id, ttl_s, retries))


class Webhooks:
    """``/v1/webhooks``: endpoints that get the tenant's events, signed (Standard Webhooks)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._retries = client.options.max_retries

    def create(
        self, url: str, events: Sequence[str] = ("job.*",), *, description: str = ""
    ) -> WebhookEndpointWithSecret:
        """Subscribe ``url``; keep the returned ``secret`` (shown once) for :func:`verify_webhook`."""
        return self._client._run(_webhooks.create_flow(url, events, description, self._retries))

    def list(self) -> WebhookList:
        """Every endpoint of the tenant."""
        return self._client._run(_webhooks.list_flow(self._retries))

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        """One endpoint."""
        return self._client._run(_webhooks.get_flow(endpoint_id, self._retries))

    def delete(self, endpoint_id: str) -> None:
        """Remove an endpoint."""
        self._client._run(_webhooks.delete_flow(endpoint_id, self._retries))

    def deliveries(self, endpoint_id: str, *, limit: int = 100) -> DeliveryList:
        """The endpoint's latest deliveries (``jobhook-{job_id}`` for a job's own webhook)."""
        return self._client._run(_webhooks.deliveries_flow(endpoint_id, limit, self._retries))
