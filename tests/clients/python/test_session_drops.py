"""A session socket that drops while a frame waits for its ack, through a TCP proxy that breaks it for
real: the frame reached the gateway and was stored, its ack was lost, the socket was cut and the
gateway could not be reached for a moment. ``send_frame`` opens the socket again and sends the frame
again under its idempotency key: the ack carries the seq it was stored as, and it is stored once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from gpurelay_client import AsyncClient, Client, SessionClosed

from bench.harness.waiting import wait_for
from tests.clients.python.stack import ThreadedStack
from tests.support.sessions import jpeg
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def proxy(stack: ThreadedStack) -> Iterator[TcpProxy]:
    running = TcpProxy(stack.url)
    try:
        yield running
    finally:
        running.close()


async def frames_received(direct: AsyncClient, session_id: str, count: int) -> None:
    """Until the gateway has stored ``count`` frames of the session."""

    async def stored() -> bool:
        return (await direct.sessions.get(session_id)).frames_received >= count

    await wait_for(stored, 30, f"{count} frames stored")


def lose_the_ack_then_drop(proxy: TcpProxy, stack: ThreadedStack, session_id: str, stored: int) -> None:
    """With the proxy muted: once the frame is stored, the socket is cut and the next connection refused."""

    async def stored_then_cut() -> None:
        async with AsyncClient(stack.url, api_key=stack.api_key) as direct:
            await frames_received(direct, session_id, stored)
        proxy.refuse(1)
        proxy.mute(False)
        proxy.cut()

    asyncio.run(stored_then_cut())


def test_a_frame_whose_socket_dropped_before_its_ack_is_sent_again_and_stored_once(
    stack: ThreadedStack, proxy: TcpProxy
) -> None:
    with (
        Client(proxy.url, api_key=stack.api_key, timeout=30) as client,
        client.sessions.start("splat", {"idle_timeout_s": 60}) as session,
    ):
        assert session.send_frame(jpeg(1)).seq == 1
        proxy.mute()
        with ThreadPoolExecutor(1) as pool:
            sent = pool.submit(session.send_frame, jpeg(2))
            lose_the_ack_then_drop(proxy, stack, session.id, 2)
            assert sent.result(timeout=60).seq == 2  # the seq it was stored as, not 3
        assert session.send_frame(jpeg(3)).seq == 3
        assert session.refresh().frames_received == 3
    assert proxy.refused == 1  # the first reopen found no gateway and was tried again


async def test_the_async_twin_sends_it_again_too(stack: ThreadedStack, proxy: TcpProxy) -> None:
    async with (
        AsyncClient(proxy.url, api_key=stack.api_key, timeout=30) as client,
        await client.sessions.start("splat", {"idle_timeout_s": 60}) as session,
    ):
        assert (await session.send_frame(jpeg(1))).seq == 1
        proxy.mute()
        sent = asyncio.create_task(session.send_frame(jpeg(2)))
        await asyncio.to_thread(lose_the_ack_then_drop, proxy, stack, session.id, 2)
        assert (await sent).seq == 2
        assert (await session.send_frame(jpeg(3))).seq == 3
        assert (await session.refresh()).frames_received == 3
    assert proxy.refused == 1


def test_a_socket_that_cannot_be_opened_again_ends_the_frame_with_session_closed(
    stack: ThreadedStack, proxy: TcpProxy
) -> None:
    with (
        Client(proxy.url, api_key=stack.api_key, timeout=30, stream_max_reconnects=2) as client,
        client.sessions.start("splat", {"idle_timeout_s": 60}) as session,
    ):
        assert session.send_frame(jpeg(1)).seq == 1
        proxy.refuse(10)
        proxy.cut()
        with pytest.raises(SessionClosed, match="could not be opened again"):
            session.send_frame(jpeg(2))
        proxy.refuse(0)  # leaving the block stops the session over HTTP: its socket is gone
    assert proxy.refused == 2  # two tries in all, then the frame's error
