"""A session's worker getting ready and a lost worker's session going on, as the blocking client shows them:
``Session.ready`` (the latest ``session.ready``) and ``Session.resumed`` (every ``session.resumed``), typed."""

from __future__ import annotations

import os
import signal

import pytest
from gpurelay_client import Client
from gpurelay_client._models import SessionReadyPayload, SessionResumedPayload

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
        info = session.refresh()
        assert (info.attempt, info.resumes, info.state) == (2, 1, "live")
