"""Event ids of workers: a namespace of their own, scoped to one attempt of one job.

JetStream de-duplicates by ``Nats-Msg-Id`` (the envelope id) across the whole JOBS stream, so an id
is a claim: whoever stores it first wins, and a later event with the same id is dropped. The
platform's ids (``created-{job}``, ``cancel-{job}``, ``{job}-queued``, ``{job}-a{n}-failed``, ...)
never start with ``w-``; every id a worker may use is ``w-{job}-a{attempt}-{suffix}``
(:func:`worker_event_id`), and the gateway's ingest route refuses any other
(:func:`is_worker_event_id`). So a worker can neither pre-empt a platform event nor another job's
or attempt's worker events.

A suffix is a name (``started``, ``succeeded``, ``art-{artifact}``: deterministic, so a resend is
stored once) or random (progress, logs, heartbeats). Every id fits the envelope's 64 characters and
is one KV/subject-safe token: a job id longer than a gateway's (36) or holding ``-``, and a name that
is not a short token, are replaced by their digest.
"""

from __future__ import annotations

import hashlib
import re
import secrets

WORKER_ID_PREFIX = "w-"
MAX_EVENT_ID = 64
"""The envelope's longest id."""
_JOB_PART = 36
"""``job_`` and a UUIDv7 in hex: the length of every id the gateway makes (longer ones are digested)."""
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_JOB_TOKEN = re.compile(r"[A-Za-z0-9_]+")
"""A job part has no ``-``, so ``w-{job}-a{n}-`` parses one way only (job ``x-a1`` is digested)."""
_RANDOM_HEX = 16


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def worker_event_prefix(job_id: str, attempt: int) -> str:
    """``w-{job}-a{attempt}-``: what every worker event id of this attempt starts with."""
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    job = job_id if len(job_id) <= _JOB_PART and _JOB_TOKEN.fullmatch(job_id) else _digest(job_id, _JOB_PART)
    return f"{WORKER_ID_PREFIX}{job}-a{attempt}-"


def worker_event_id(job_id: str, attempt: int, name: str | None = None) -> str:
    """A worker event id of ``attempt`` of ``job_id``: named (deterministic) or, without ``name``, random."""
    prefix = worker_event_prefix(job_id, attempt)
    room = MAX_EVENT_ID - len(prefix)
    if name is None:
        return prefix + secrets.token_hex(_RANDOM_HEX // 2)[:room]
    if not name:
        raise ValueError("an event id name may not be empty")
    if len(name) <= room and _TOKEN.fullmatch(name):
        return prefix + name
    return prefix + _digest(name, room)


def is_worker_event_id(event_id: str, job_id: str, attempt: int) -> bool:
    """Whether ``event_id`` is a worker id of exactly this job and attempt (and fits an envelope)."""
    prefix = worker_event_prefix(job_id, attempt)
    suffix = event_id[len(prefix) :]
    return (
        len(event_id) <= MAX_EVENT_ID
        and event_id.startswith(prefix)
        and bool(suffix)
        and _TOKEN.fullmatch(suffix) is not None
    )
