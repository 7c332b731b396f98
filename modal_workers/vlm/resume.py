"""A vlm session across a lost worker: its conversation as the session's snapshot, and a later attempt's restore.

After each result the workload snapshots the conversation it keeps (``conversation.json``: the earlier
turns, user text and answer, already bounded by ``context_tokens``) with its counters as the resume state
(:func:`resume_state`). A later attempt (:func:`restore`) puts those turns back into its conversation,
counted again with its own tokenizer (so still within the budget), and goes on numbering chunks; the
frames after the last answered chunk are replayed into it by the runtime, so its next answers carry the
earlier turns.
"""

from __future__ import annotations

import json
from typing import Any

from modal_workers.runtime.session_resume import ResumePoint
from modal_workers.vlm.session import VlmSession

SNAPSHOT_NAME = "conversation.json"


def conversation_json(session: VlmSession) -> bytes:
    """The conversation's kept turns as the session's snapshot."""
    turns = [{"user": user, "answer": answer} for user, answer in session.remembered()]
    return json.dumps({"turns": turns}).encode()


def resume_state(session: VlmSession, tokens: int) -> dict[str, Any]:
    """The counters a snapshot carries besides the conversation (``tokens``: generated so far)."""
    return {
        "chunks": session.chunker.chunks_taken, "frames_merged": session.chunker.frames_dropped,
        "frames_invalid": session.frames_invalid, "alerts": session.alerts, "tokens": tokens,
        "turns_dropped": session.conversation.turns_dropped,
    }  # fmt: skip


def restore(session: VlmSession, point: ResumePoint, snapshot: bytes | None) -> int:
    """Put the snapshot's turns and the point's counters back into ``session`` (its model loaded: the
    turns are counted with its tokenizer); the tokens generated so far."""
    state = point.state
    turns = json.loads(snapshot)["turns"] if snapshot else []
    for turn in turns:
        session.conversation.add(str(turn["user"]), str(turn["answer"]))
    session.conversation.turns_dropped += int(state.get("turns_dropped", 0))
    session.chunker.chunks_taken = int(state.get("chunks", 0))
    session.chunker.frames_dropped = int(state.get("frames_merged", 0))
    session.frames_invalid, session.alerts = int(state.get("frames_invalid", 0)), int(state.get("alerts", 0))
    return int(state.get("tokens", 0))
