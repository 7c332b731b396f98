"""What the client does when the network or the server fails, through a proxy that breaks things for real:
a stream cut mid-job resumes with no gap and no repeat, a 503 is retried after its Retry-After, and a
create (or an HTTP frame) whose answer was lost is retried under its Idempotency-Key into exactly one
job (or frame)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from gpurelay_client import Client, ServiceUnavailable

from tests.clients.python.proxy import DROP_ANSWER, FORWARD, REFUSE_503, Action, Proxy
from tests.clients.python.stack import ThreadedStack
from tests.support.sessions import jpeg

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def proxy(stack: ThreadedStack) -> Iterator[Proxy]:
    """A proxy in front of the gateway, forwarding everything until a test says otherwise."""
    parts = urlsplit(stack.url)
    running = Proxy((parts.hostname or "127.0.0.1", parts.port or 80))
    try:
        yield running
    finally:
        running.close()


def first_only(method: str, prefix: str, action: Action) -> object:
    """A rule: ``action`` for the first matching request, then forward everything."""
    done: list[bool] = []

    def decide(m: str, path: str) -> Action:
        if m == method and path.startswith(prefix) and not done:
            done.append(True)
            return action
        return FORWARD

    return decide


def test_a_stream_cut_mid_job_resumes_after_the_last_event_with_no_gap_and_no_repeat(
    stack: ThreadedStack, proxy: Proxy, lap_video: Path
) -> None:
    """The job waits 6 s before it starts: the cut (in its 2nd event, job.queued) and the resume (after the
    server's ``retry:`` hint of 3 s) both fall inside the job's life, whatever the machine's load."""
    with Client(stack.url, api_key=stack.api_key) as direct:
        job = direct.jobs.create("lap_compare", inputs={"video": lap_video}, params={"downscale_width": 160}, delay_s=6)
    proxy.decide = first_only("GET", f"/v1/jobs/{job.id}/events", ("cut_after_events", 2))  # type: ignore[assignment]
    with Client(proxy.url, api_key=stack.api_key) as client:
        events = list(client.jobs.stream(job))
        replay = list(client.jobs.stream(job))  # the whole stream again, uncut
    asks = proxy.requests("GET", f"/v1/jobs/{job.id}/events")
    assert asks[0].action == ("cut_after_events", 2)
    assert "last-event-id" not in asks[0].headers
    assert asks[1].headers["last-event-id"] == events[0].id  # the 2nd event arrived cut in half: resumed after the 1st
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), "an event was repeated or came out of order"
    kept = [e.id for e in events if e.type != "job.progress"]  # progress is coalesced by time on each stream
    assert kept == [e.id for e in replay if e.type != "job.progress"], "an event is missing"
    assert events[-1].type == "job.succeeded"
    assert asks[1].at - asks[0].at >= 3.0 * 0.95, "the server's retry: hint (3 s) was not waited for"
    started = next(e.envelope.time for e in events if e.type == "job.started")
    assert started is not None
    assert started.timestamp() > asks[1].wall, "the job had started before the stream was resumed"


def test_a_503_is_retried_after_its_retry_after(stack: ThreadedStack, proxy: Proxy, lap_video: Path) -> None:
    with Client(stack.url, api_key=stack.api_key) as direct:
        job = direct.jobs.create("lap_compare", inputs={"video": lap_video}, delay_s=3600)
        direct.jobs.cancel(job)
    proxy.decide = first_only("GET", f"/v1/jobs/{job.id}", REFUSE_503)  # type: ignore[assignment]
    with Client(proxy.url, api_key=stack.api_key) as client:
        assert client.jobs.get(job.id).id == job.id
    refused, served = proxy.requests("GET", f"/v1/jobs/{job.id}")
    assert (refused.action, served.action) == (REFUSE_503, FORWARD)
    assert served.at - refused.at >= proxy.retry_after_s * 0.95, "Retry-After was not waited for"
    proxy.decide = lambda method, path: REFUSE_503
    with Client(proxy.url, api_key=stack.api_key, max_retries=1) as client, pytest.raises(ServiceUnavailable) as err:
        client.jobs.get(job.id)
    assert err.value.retry_after_s == proxy.retry_after_s
    assert err.value.detail == "proxy says not now"


def test_a_create_whose_answer_was_lost_is_retried_into_exactly_one_job(
    stack: ThreadedStack, proxy: Proxy, lap_video: Path
) -> None:
    key = stack.new_key("dropped")
    with Client(stack.url, api_key=key) as direct:
        upload = direct.uploads.upload(lap_video)
    proxy.decide = first_only("POST", "/v1/jobs", DROP_ANSWER)  # type: ignore[assignment]
    with Client(proxy.url, api_key=key) as client:
        job = client.jobs.create("lap_compare", inputs={"video": upload}, delay_s=3600)
        listed = [j.id for j in client.jobs.list()]
        client.jobs.cancel(job)
    posts = proxy.requests("POST", "/v1/jobs")
    assert [p.action for p in posts[:2]] == [DROP_ANSWER, FORWARD]
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert listed == [job.id], "the retried create made a second job"


def test_a_frame_whose_answer_was_lost_is_retried_into_exactly_one_frame(stack: ThreadedStack, proxy: Proxy) -> None:
    with Client(stack.url, api_key=stack.api_key) as direct:
        session = direct.sessions.start("splat", {"idle_timeout_s": 60})
        frames = f"/v1/sessions/{session.id}/frames"
        proxy.decide = first_only("POST", frames, DROP_ANSWER)  # type: ignore[assignment]
        with Client(proxy.url, api_key=stack.api_key) as client:
            first = client.sessions.send_frame(session, jpeg(1))
            second = client.sessions.send_frame(session, jpeg(2))
        received = direct.sessions.get(session).frames_received
        direct.sessions.stop(session)
        session.close()
    posts = proxy.requests("POST", frames)
    assert [p.action for p in posts] == [DROP_ANSWER, FORWARD, FORWARD]
    keys = [p.headers["idempotency-key"] for p in posts]
    assert keys[0] == keys[1] != keys[2]
    assert (first.seq, second.seq) == (1, 2), "the retried frame was stored twice"
    assert received == 2


def test_a_create_without_its_key_is_not_sent_twice(stack: ThreadedStack, proxy: Proxy) -> None:
    """A POST that carries no Idempotency-Key (an upload's creation) is never retried once sent."""
    proxy.decide = first_only("POST", "/v1/uploads", DROP_ANSWER)  # type: ignore[assignment]
    with Client(proxy.url, api_key=stack.api_key) as client, pytest.raises(Exception, match="POST /v1/uploads"):
        client.uploads.create("lap.mp4", "video/mp4", 10)
    assert len(proxy.requests("POST", "/v1/uploads")) == 1
