"""A session's worker getting ready and a lost worker's session going on, as the blocking client shows them:
``Session.ready`` (the latest ``session.ready``) and ``Session.resumed`` (every ``session.resumed``), typed."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from gpurelay_client import Client, Session
from gpurelay_client._models import SessionOut, SessionReadyPayload, SessionResumedPayload

from bench.harness.waiting import wait_for
from tests.clients.python.stack import ThreadedStack
from tests.support.sessions import jpeg

pytestmark = pytest.mark.timeout(120)


def test_the_session_says_when_its_worker_is_ready_and_when_a_new_one_resumed_it(
    client: Client, stack: ThreadedStack
) -> None:
    marks = stack.data_dir.parent / "marks"
    with client.sessions.start("splat", {"idle_timeout_s": 60}) as session:
        for k in (1, 2):
            session.send_frame(jpeg(k))
        for event in session.events():
            if event.type == "session.snapshot":  # frames 1 and 2 echoed and snapshotted
                break
        assert isinstance(session.ready, SessionReadyPayload)
        assert (session.ready.attempt, session.ready.resumable, session.resumed) == (1, True, [])
        (mark,) = list(marks.glob(f"{session.id}.a1.*"))
        os.kill(int(mark.read_text()), signal.SIGKILL)
        assert session.send_frame(jpeg(3)).seq == 3  # stored while no worker runs
        for result in session.results():
            if result.first_seq == 3:
                break
        (resumed,) = session.resumed
        assert isinstance(resumed, SessionResumedPayload)
        assert (resumed.attempt, resumed.from_seq, resumed.frames_lost) == (2, 2, 0)
        assert session.ready.attempt == 2
        info = asyncio.run(wait_for(lambda: ready_in_record(session, 2), 30, "attempt 2's ready in the record"))
        assert (info.attempt, info.resumes, info.state) == (2, 1, "live")


def ready_in_record(session: Session, attempt: int) -> SessionOut | None:
    """The session's record once it holds ``attempt``'s ``session.ready`` (the dispatcher folds events apart
    from the socket that delivered them, so the record may lag what the client read)."""
    info = session.refresh()
    return info if info.attempt == attempt and info.ready_at is not None else None
