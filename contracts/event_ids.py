"""Every event id the platform makes: one builder per format, and the workers' own namespace.

JetStream de-duplicates by ``Nats-Msg-Id`` (the envelope id) across the whole JOBS stream, so an id
is a claim: whoever stores it first wins, and a later event with the same id is dropped. A logical
event that two services (or two paths of one) may publish gets one deterministic id from one
builder here, so both publish the same id and the log keeps it once: ``job.created`` from the
gateway and from the dispatcher's sweeper (:func:`created_event_id`), ``job.canceled`` before a run
and during one (:func:`canceled_event_id`), ``job.failed`` of an unroutable job and of a failed
first attempt (:func:`failed_event_id`).

* gateway: ``created-{job}`` (:func:`created_event_id`, also the sweeper's), ``cancel-{job}``
  (:func:`cancel_requested_event_id`), ``stop-{session}`` (:func:`stop_requested_event_id`, also
  the stop control message's ``Nats-Msg-Id``), ``reset-{session}-{nonce}`` (:func:`reset_msg_id`),
  ``upload-completed-{upload}`` (:func:`upload_completed_event_id`); a frame's ``Nats-Msg-Id`` is
  ``frame-{session}-{seq}`` (:func:`frame_msg_id`), or ``frame-{session}-k{digest}`` when the client
  sent an ``Idempotency-Key`` (:func:`frame_key_msg_id`);
* dispatcher: ``{job}-{name}`` once per job (:func:`job_event_id`: ``queued``, ``canceled``),
  ``{job}-a{n}-{name}`` once per attempt (:func:`attempt_event_id`: ``dispatched``, ``retrying``,
  ``failed``, ``succeeded``, ``stage{i}-{status}``, and the dispatch ticket's ``ticket``);
* notifier: ``{event}:{endpoint}`` per webhook delivery (:func:`delivery_msg_id`) and
  ``dead:{event}:{endpoint}`` per dead letter (:func:`dead_letter_msg_id`; a replayed or redriven
  delivery's adds where it came from, ``dead:{event}:{endpoint}:{stream}:{seq}``);
* operators: ``replay:{stream}:{seq}:{target}`` per replayed message and target
  (:func:`replay_msg_id`) and ``redrive:{seq}:{endpoint}`` per redriven dead letter
  (:func:`redrive_msg_id`), so a replay or a redrive repeated within the duplicate window is stored
  once; the copy carries ``Gpurelay-Replay-Of: {stream}:{seq}`` (:func:`replay_of`);
* workers: ``w-{job}-a{n}-{suffix}`` (:func:`worker_event_id`).

An attempt's ending (``job.succeeded``, ``job.failed``, ``job.retrying``) keeps its id but is
published with one ``Nats-Msg-Id`` per attempt, ``end-{job}-a{n}`` (:func:`attempt_end_msg_id`),
whoever publishes it: the worker, the dispatcher (a timeout, a silence, a pipeline's success) or the
fold (an unroutable job). So the first ending stored ends the attempt and, within the duplicate
window, a later one is answered as a duplicate and not stored: a worker whose ``job.succeeded`` was
still on its way when the dispatcher gave its attempt up (``job.retrying``) does not end the job a
second time once the next attempt succeeds. A ``job.canceled`` ends an attempt too (the one running,
or the one queued that will not run) and is published so, and only while the job has no
``job.canceled`` yet: a cancel racing a run's end stores one of them.

The platform's ids never start with ``w-``; every id a worker may use is
``w-{job}-a{attempt}-{suffix}`` (:func:`worker_event_id`), and the gateway's ingest route refuses
any other (:func:`is_worker_event_id`). So a worker can neither pre-empt a platform event nor
another job's or attempt's worker events.

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


def _job_part(job_id: str) -> str:
    """``job_id`` as an id's part: itself, or its digest when longer than a gateway's or holding ``-``."""
    return job_id if len(job_id) <= _JOB_PART and _JOB_TOKEN.fullmatch(job_id) else _digest(job_id, _JOB_PART)


def created_event_id(job_id: str) -> str:
    """``created-{job}``: the job's ``job.created`` (the gateway's, or the sweeper's late copy)."""
    return f"created-{job_id}"


def cancel_requested_event_id(job_id: str) -> str:
    """``cancel-{job}``: the job's one ``job.cancel_requested`` (a repeated cancel is stored once)."""
    return f"cancel-{job_id}"


def stop_requested_event_id(session_id: str) -> str:
    """``stop-{session}``: a session's ``session.stop_requested``, also its stop control message's id."""
    return f"stop-{session_id}"


def reset_msg_id(session_id: str, nonce: int) -> str:
    """``reset-{session}-{nonce}``: one reset control message (each reset is a new one)."""
    return f"reset-{session_id}-{nonce}"


def frame_msg_id(session_id: str, seq: int) -> str:
    """``frame-{session}-{seq}``: the ``Nats-Msg-Id`` of a session's frame ``seq`` (stored once)."""
    return f"frame-{session_id}-{seq}"


def frame_key_msg_id(session_id: str, idempotency_key: str) -> str:
    """``frame-{session}-k{digest}``: the ``Nats-Msg-Id`` of a frame sent with an ``Idempotency-Key``, in
    place of its seq's, so a retry of that frame within FRAMES' duplicate window is answered with the
    seq it was stored as, not stored again as the next frame."""
    return f"frame-{session_id}-k{_digest(idempotency_key, 32)}"


def upload_completed_event_id(upload_id: str) -> str:
    """``upload-completed-{upload}``: the upload's one ``upload.completed``."""
    return f"upload-completed-{upload_id}"


def job_event_id(job_id: str, name: str) -> str:
    """``{job}-{name}``: a dispatcher event that happens once per job (``queued``, ``canceled``)."""
    return f"{job_id}-{name}"


def attempt_event_id(job_id: str, attempt: int, name: str) -> str:
    """``{job}-a{attempt}-{name}``: a dispatcher event that happens once per attempt."""
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    return f"{job_id}-a{attempt}-{name}"


def queued_event_id(job_id: str) -> str:
    """The job's ``job.queued``."""
    return job_event_id(job_id, "queued")


def canceled_event_id(job_id: str) -> str:
    """The job's ``job.canceled``: the same whether it ends before or during a run."""
    return job_event_id(job_id, "canceled")


def failed_event_id(job_id: str, attempt: int) -> str:
    """The dispatcher's ``job.failed`` of ``attempt`` (an unroutable job fails at attempt 1)."""
    return attempt_event_id(job_id, attempt, "failed")


def attempt_end_msg_id(job_id: str, attempt: int) -> str:
    """``end-{job}-a{attempt}``: the ``Nats-Msg-Id`` of the one event that ends ``attempt`` (see above)."""
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    job = _job_part(job_id)
    return f"end-{job}-a{attempt}"


def stage_event_name(index: int, status: str) -> str:
    """``stage{index}-{status}``: the name of a ``job.stage`` event within its attempt."""
    return f"stage{index}-{status}"


def ticket_msg_id(job_id: str, attempt: int) -> str:
    """The ``Nats-Msg-Id`` of the dispatch ticket of ``attempt`` (stored once per attempt)."""
    return attempt_event_id(job_id, attempt, "ticket")


def delivery_msg_id(event_id: str, endpoint_id: str) -> str:
    """``{event}:{endpoint}``: the ``Nats-Msg-Id`` of one webhook delivery of an event (fanned out once)."""
    return f"{event_id}:{endpoint_id}"


def dead_letter_msg_id(event_id: str, endpoint_id: str, replay: str | None = None) -> str:
    """``dead:{event}:{endpoint}``: the ``Nats-Msg-Id`` of a delivery's ``webhook.dead_lettered`` (one per delivery).

    A replayed or redriven delivery (``replay``: its :func:`replay_of`) is a delivery of its own:
    ``dead:{event}:{endpoint}:{replay}``, so dying again within the duplicate window is not dropped.
    """
    return f"dead:{event_id}:{endpoint_id}" + (f":{replay}" if replay else "")


def replay_of(stream: str, seq: int) -> str:
    """``{stream}:{seq}``: the ``Gpurelay-Replay-Of`` value of a copy of message ``seq`` of ``stream``
    (the stream's name without the namespace)."""
    if seq < 1:
        raise ValueError("a stream sequence starts at 1")
    return f"{stream}:{seq}"


def replay_msg_id(stream: str, seq: int, target: str) -> str:
    """``replay:{stream}:{seq}:{target}``: a replayed message's ``Nats-Msg-Id`` at ``target`` (a subject or
    an endpoint id; digested unless it is a short token), so replaying it again within the window stores it once."""
    token = target if len(target) <= MAX_EVENT_ID and _TOKEN.fullmatch(target) else _digest(target, 32)
    return f"replay:{replay_of(stream, seq)}:{token}"


def redrive_msg_id(dead_seq: int, endpoint_id: str) -> str:
    """``redrive:{seq}:{endpoint}``: the queued copy of dead letter ``dead_seq`` (DEADLETTER sequence)."""
    if dead_seq < 1:
        raise ValueError("a stream sequence starts at 1")
    return f"redrive:{dead_seq}:{endpoint_id}"


def worker_event_prefix(job_id: str, attempt: int) -> str:
    """``w-{job}-a{attempt}-``: what every worker event id of this attempt starts with."""
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    job = _job_part(job_id)
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
