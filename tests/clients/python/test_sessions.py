"""Live sessions over their socket, robot joints (HTTP and the publisher) and webhook verification,
with the blocking client against the embedded stack (sessions run the echo workload)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from gpurelay_client import Client, Event, NotFound, WebhookVerificationError, verify_webhook
from gpurelay_client._models import JobSucceededPayload
from gpurelay_client._session_protocol import result_of

from bench.harness.receivers import Receiver
from bench.harness.waiting import wait_for
from tests.clients.python.stack import ThreadedStack
from tests.support.http import bound_socket, serve

pytestmark = pytest.mark.timeout(120)
FRAMES = 30


def jpeg(k: int) -> bytes:
    """A small real JPEG, different for each ``k``."""
    image = np.full((48, 64, 3), (k * 8) % 256, np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data.tobytes())


def test_a_30_frame_session_acks_every_frame_and_answers_each_with_a_result(client: Client) -> None:
    start = round(time.time(), 3)
    params = {"idle_timeout_s": 60, "frame_buffer": 64}  # every frame held: a worker slowed by load drops none
    with client.sessions.start("vlm", params, robot_id="arm-session") as session:
        acks = [session.send_frame(jpeg(k), ts=start + k / 100) for k in range(FRAMES - 1)]
        acks.append(session.send_frame(np.full((48, 64, 3), 7, np.uint8)))  # an array, encoded with OpenCV
        results = []
        for result in session.results():
            results.append(result)
            if len(results) == FRAMES:
                break
        session.stop()
        events = list(session.events())
    assert [a.seq for a in acks] == list(range(1, FRAMES + 1))
    assert [a.ts for a in acks[:3]] == [start, start + 0.01, start + 0.02]
    assert sorted(r.first_seq for r in results) == list(range(1, FRAMES + 1))
    assert all(r.text == f"frame {r.first_seq}" for r in results)
    assert events[-1].type == "job.succeeded"
    assert isinstance(events[-1].data, JobSucceededPayload)
    result = events[-1].data.result or {}
    assert result["seqs"] == list(range(1, FRAMES + 1))
    assert result["stopped"] == "requested"
    record = client.sessions.get(session.id)
    assert record.frames_received == FRAMES
    assert record.kind == "vlm"


def test_a_reset_goes_through_the_socket_and_another_tenants_session_is_not_found(
    client: Client, stack: ThreadedStack
) -> None:
    with client.sessions.start("splat", {"idle_timeout_s": 60}) as session:
        session.send_frame(jpeg(1))
        session.reset()
        session.send_frame(jpeg(2))
        session.stop()
        final = next(e for e in session.events() if e.terminal)
    assert isinstance(final.data, JobSucceededPayload)
    assert final.data.result is not None
    assert final.data.result["resets"] == 1
    assert final.data.result["seqs"] == [2]
    with Client(stack.url, api_key=stack.new_key("stranger")) as stranger, pytest.raises(NotFound):
        stranger.sessions.get(session.id)


def test_a_frame_sent_again_with_the_apps_own_key_is_acked_with_the_seq_it_was_stored_as(client: Client) -> None:
    with client.sessions.start("vlm", {"idle_timeout_s": 60}) as session:
        assert session.send_frame(jpeg(1), idempotency_key="cam-1").seq == 1
        assert session.send_frame(jpeg(2), idempotency_key="cam-2").seq == 2
        again = client.sessions.connect(session.id)  # another socket: the app gave up and retried
        try:
            assert again.send_frame(jpeg(1), idempotency_key="cam-1").seq == 1
        finally:
            again.close()  # the socket only: leaving a ``with`` would stop the session
        assert client.sessions.send_frame(session.id, jpeg(2), idempotency_key="cam-2").seq == 2  # or over HTTP
        for bad in ("", "k" * 256, "caf\u00e9"):
            with pytest.raises(ValueError, match="idempotency_key"):
                session.send_frame(jpeg(3), idempotency_key=bad)
        assert session.send_frame(jpeg(3)).seq == 3  # without one, a fresh key: a new frame
        assert client.sessions.get(session.id).frames_received == 3
        session.stop()


def test_a_stop_after_the_session_ended_elsewhere_is_not_an_error(client: Client) -> None:
    with client.sessions.start("vlm", {"idle_timeout_s": 60}) as session:
        session.send_frame(jpeg(1))
        client.sessions.stop(session.id)  # another process stops it: the server closes the socket (1000)
        final = next(e for e in session.events() if e.terminal)
        session.stop()  # the socket is closed: the session ended, which is what a stop asks
    assert isinstance(final.data, JobSucceededPayload)
    assert (final.data.result or {})["stopped"] == "requested"


def test_events_taken_between_acks_are_not_yielded_again_and_the_sse_stream_has_them(client: Client) -> None:
    taken: list[Event] = []
    sent = 0
    with client.sessions.start("vlm", {"idle_timeout_s": 60}) as session:
        deadline = time.monotonic() + 30
        while not any(e.type == "session.result" for e in taken):  # the echo worker answers between acks
            assert time.monotonic() < deadline, "no result arrived while frames were acked"
            session.send_frame(jpeg(sent))
            sent += 1
            taken += session.take_events()
            time.sleep(0.1)
        session.stop()
        taken += session.take_events()
        rest = list(session.events())
    socket = [e.id for e in taken + rest]
    streamed = list(client.sessions.stream(session.id))
    tail = list(client.sessions.stream(session, after=streamed[-3].id))
    assert session.take_events() == []
    assert len(socket) == len(set(socket)), "an event taken was yielded again"
    assert sorted(r.first_seq for e in taken + rest if (r := result_of(e))) == list(range(1, sent + 1))
    assert socket == [e.id for e in streamed][-len(socket) :]
    assert streamed[-1].type == "job.succeeded"
    assert [e.id for e in tail] == [e.id for e in streamed[-2:]]


def test_joints_go_over_http_and_through_the_publisher(client: Client) -> None:
    angles = [0.1, -0.2, 0.3, -0.4, 0.5, 0.6]
    assert client.robots.send_joints("arm-http", angles).accepted == 1
    assert client.robots.latest("arm-http").joint_angles == angles
    batch = [([0.01 * k] * 6, time.time()) for k in range(5)]
    assert client.robots.send_joint_batch("arm-http", batch).accepted == 5
    observation = {key: 10.0 for key in ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")}
    with client.robots.publisher("arm-pub", max_batch=8) as arm:
        for k in range(50):
            arm.publish([0.001 * k] * 6)
        arm.publish({f"{key}.pos": value for key, value in observation.items()} | {"gripper.pos": 100.0})
    stats = arm.stats()
    assert (stats.queued, stats.sent, stats.dropped, stats.accepted, stats.rejected) == (51, 51, 0, 51, 0)
    latest = client.robots.latest("arm-pub").joint_angles
    assert latest[:5] == pytest.approx([np.radians(10.0)] * 5)
    assert latest[5] == pytest.approx(1.74533)


def test_a_full_publisher_drops_the_oldest_and_counts_them(stack: ThreadedStack) -> None:
    with Client("http://127.0.0.1:9", api_key="gr_nowhere") as nowhere:  # nothing listens: nothing is sent
        arm = nowhere.robots.publisher("arm-1", max_pending=10)
        for k in range(25):
            arm.publish([0.0] * 6, ts=float(k))
        arm.close(timeout_s=0.1)
    stats = arm.stats()
    assert (stats.queued, stats.sent, stats.dropped) == (25, 0, 15)
    assert stats.last_error is not None


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """A webhook receiver on loopback that keeps every request as it came."""
    hooks = Receiver(default=204)
    sock = bound_socket()
    with serve(hooks.app(), sock):
        yield hooks, f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"


def test_a_real_delivery_verifies_and_a_forged_one_does_not(
    stack: ThreadedStack, receiver: tuple[Receiver, str], lap_video: object
) -> None:
    hooks, url = receiver
    with Client(stack.url, api_key=stack.new_key("hooked")) as client:
        endpoint = client.webhooks.create(url, ["job.succeeded"])
        job = client.jobs.run("lap_compare", inputs={"video": lap_video}, params={"downscale_width": 160}, timeout=90)
        assert [e.id for e in client.webhooks.list()] == [endpoint.id]
    import asyncio

    asyncio.run(wait_for(lambda: hooks.on("/hooks"), 30, "the job.succeeded delivery"))
    delivery = hooks.on("/hooks")[0]
    event = verify_webhook(delivery.body, delivery.headers, endpoint.secret)
    assert (event.type, event.job_id, event.id) == ("job.succeeded", job.id, delivery.webhook_id)
    forged = delivery.body.replace(job.id.encode(), b"job_forged")
    other_secret = "whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()
    stale = {**delivery.headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    for body, headers, secret in [
        (forged, delivery.headers, endpoint.secret),
        (delivery.body, delivery.headers, other_secret),
        (delivery.body, stale, endpoint.secret),
        (delivery.body, {**delivery.headers, "webhook-signature": "v1"}, endpoint.secret),
        (b"\xff\xfe", delivery.headers, endpoint.secret),
    ]:
        with pytest.raises(WebhookVerificationError):
            verify_webhook(body, headers, secret)
