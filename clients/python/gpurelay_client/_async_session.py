"""A live session over its WebSocket, with asyncio (``_sync_session`` is the twin)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gpurelay_client import _session_protocol, _sessions
from gpurelay_client._core import backoff_s, segment
from gpurelay_client._errors import APITimeoutError, GpurelayError, SessionClosed, SessionError
from gpurelay_client._events import Event
from gpurelay_client._models import SessionOut, SessionResultPayload
from gpurelay_client._session_protocol import (
    Frame,
    FrameAck,
    FrameRetries,
    SessionProtocol,
    encode_frame,
    frame_meta,
    opens_later,
    result_of,
)
from gpurelay_client._sync_session import MAX_MESSAGE_BYTES, closed

if TYPE_CHECKING:
    from gpurelay_client._async_client import AsyncClient


class AsyncSession(_session_protocol.SessionLifecycle):
    """A live session (``splat``, ``vlm``): frames in, acks, events and results out, on one socket.

    ``async with await client.sessions.start("vlm", params) as session:`` stops the session on leaving the block
    (an open session holds a GPU) unless it was stopped or ended, then closes the socket.
    """

    _ws: ClientConnection
    """The socket (set by :meth:`open`, replaced on a reconnection)."""

    def __init__(self, client: AsyncClient, info: SessionOut, after: int | None = None) -> None:
        """Use :meth:`open` (a socket is opened with ``await``)."""
        self._client, self.info, self.id = client, info, info.id
        self._socket = contextlib.AsyncExitStack()
        self._protocol = SessionProtocol(after)
        self._stopped = False
        self._retries = client.options.max_retries

    @classmethod
    async def open(cls, client: AsyncClient, info: SessionOut, after: int | None = None) -> AsyncSession:
        """The session with its socket open."""
        session = cls(client, info, after)
        session._ws = await session._connect()
        return session

    async def _connect(self) -> ClientConnection:
        await self._socket.aclose()
        after = self._protocol.last_seq
        url = self._client.options.ws_url(
            f"/v1/sessions/{segment(self.id)}/stream", {"after": str(after)} if after else None
        )
        connection = connect(
            url,
            additional_headers=self._client.options.ws_headers(),
            open_timeout=self._client.options.timeout,
            max_size=MAX_MESSAGE_BYTES,
        )
        return await self._socket.enter_async_context(connection)

    async def _send(self, *messages: str | bytes) -> None:
        try:
            for message in messages:
                await self._ws.send(message)
        except ConnectionClosed as exc:
            raise closed(exc) from None

    async def _reply(self) -> dict[str, Any]:
        """Read until the answer to the oldest request (events are kept for :meth:`events`)."""
        while True:
            try:
                async with asyncio.timeout(self._client.options.timeout):
                    raw = await self._ws.recv()
            except ConnectionClosed as exc:
                raise closed(exc) from None
            except TimeoutError:
                raise APITimeoutError(f"session {self.id}: no answer in {self._client.options.timeout} s") from None
            if (reply := self._protocol.receive(raw)) is not None:
                return reply

    async def _reopen(self, drops: int) -> None:
        """Open the socket again after a backoff (events resume after the last one seen); while it
        cannot be opened for a moment (the gateway restarting), tried again, ``stream_max_reconnects``
        tries in all."""
        while True:
            await asyncio.sleep(backoff_s(drops - 1))
            self._protocol.pending.clear()
            try:
                self._ws = await self._connect()
                return
            except Exception as exc:
                drops += 1
                if not opens_later(exc) or drops > self._client.options.stream_max_reconnects:
                    raise SessionClosed(None, f"and could not be opened again: {exc}") from exc

    async def send_frame(
        self,
        frame: Frame,
        *,
        ts: float | None = None,
        pose: Sequence[float] | None = None,
        idempotency_key: str | None = None,
    ) -> FrameAck:
        """Send one frame (JPEG/PNG bytes, or an image array encoded to JPEG if OpenCV is installed),
        with its capture time and camera pose if known; the server's ack (``seq``) once it is stored.

        A socket that drops before the ack is opened again and the frame sent again under its
        idempotency key, so it is stored once (``stream_max_reconnects`` drops in a row); an
        ``unavailable`` answer is retried too (``max_retries``). The key is ``idempotency_key`` (1-255
        printable ASCII) when given, else a fresh one: the app's own key makes the frame safe to send
        again after this call gave up, on this socket or another, within FRAMES' duplicate window."""
        data, meta = encode_frame(frame), frame_meta(ts, pose, idempotency_key)
        retries = FrameRetries(self._client.options.stream_max_reconnects, self._retries)
        while True:
            try:
                await self._send(meta, data)
                self._protocol.expect("ack")
                return SessionProtocol.ack(await self._reply())
            except SessionClosed as exc:
                await self._reopen(retries.reopen_after(exc, self._protocol.ended))
            except SessionError as exc:
                await asyncio.sleep(retries.pause_after(exc))

    async def _control(self, action: str) -> None:
        try:  # a socket closed before the stop went out may mean the session ended already
            await self._send(json.dumps({"type": action}))
            self._protocol.expect("control")
            SessionProtocol.control(await self._reply())
        except SessionClosed as exc:
            if not SessionProtocol.stopped_by_close(action, exc.code, self._protocol):
                raise

    async def stop(self) -> None:
        """Ask the worker to finish (final outputs); the session then succeeds. Events go on until it ends."""
        await self._control("stop")
        self._stopped = True

    async def reset(self) -> None:
        """Clear the worker's model and counters; the session goes on."""
        await self._control("reset")

    async def events(self) -> AsyncIterator[Event]:
        """The session's events (progress, results, snapshots, alerts) until its terminal event; a
        dropped socket is opened again after the last event seen."""
        failures = 0
        while True:
            while self._protocol.events:
                yield self._protocol.events.popleft()
            if self._protocol.ended:
                return
            try:
                raw = await self._ws.recv()
            except ConnectionClosed as exc:
                if self._protocol.ended:
                    continue
                failures += 1
                code = exc.rcvd.code if exc.rcvd else None
                if (code is not None and code >= 4000) or failures > self._client.options.stream_max_reconnects:
                    raise closed(exc) from None
                await self._reopen(failures)
                continue
            self._protocol.receive(raw)
            failures = 0

    async def results(self) -> AsyncIterator[SessionResultPayload]:
        """The ``session.result`` payloads among :meth:`events`."""
        async for event in self.events():
            if (result := result_of(event)) is not None:
                yield result

    async def refresh(self) -> SessionOut:
        """The session's record now (``GET /v1/sessions/{id}``), kept as :attr:`info`."""
        self.info = await self._client._run(_sessions.get_flow(self.id, self._retries))
        return self.info

    async def close(self) -> None:
        """Close the socket (the session goes on until stopped, idle or canceled)."""
        await self._socket.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if not self._stopped and not self._protocol.ended:
                try:
                    await self.stop()
                except SessionClosed:  # the socket is gone: stop over HTTP
                    with contextlib.suppress(GpurelayError):  # 409: it ended meanwhile
                        await self._client._run(_sessions.control_flow(self.id, "stop", self._retries))
                except SessionError:  # refused: it ended meanwhile
                    pass
        finally:
            await self.close()
