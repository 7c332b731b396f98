"""NATS subject builders (v1).

Every subject the platform uses is built here from validated ids. A :class:`Namespace` prefixes
subjects, stream names and KV bucket names so that several deployments (or tests) can share one
NATS server without seeing each other's data; the default namespace is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.ids import validate_id

JOB_EVENT_NAMES: frozenset[str] = frozenset(
    {
        "created",
        "queued",
        "position",
        "dispatched",
        "started",
        "progress",
        "log",
        "artifact",
        "heartbeat",
        "stage",
        "retrying",
        "cancel_requested",
        "succeeded",
        "failed",
        "canceled",
        "stop_requested",
        "snapshot",
        "result",
        "alert",
        "ready",
        "resumed",
    }
)
"""The last token of ``jobs.{tenant}.{job_id}.{event}`` (job events, then a session's own)."""
JOB_SLOTS = 32
"""How many slots JOBS spreads jobs over: it stores each job event ``jobs.{tenant}.{job_id}.{event}`` as
``jobs.{tenant}.{job_id}.{event}.{slot}``, the slot a hash of the tenant and job id that the server
computes (a stream ``subject_transform``, :func:`job_slot_transform`). Every event of a job has the same
slot, so the dispatcher's fold partitions read JOBS itself, each a set of slots, in stream order. The
platform publishes, and core subscribers see, the 4-token subject; JetStream reads (consumers, gets,
``Nats-Expected-Last-Subject-Sequence-Subject``) see the stored one: :meth:`Subjects.stored_job_event`."""
JOB_RECORDS = "records"
"""KV ``jobs`` republishes each stored record on ``records.{tenant}.{job_id}`` (a bucket's ``republish``)."""


@dataclass(frozen=True, slots=True)
class Namespace:
    """A prefix isolating one deployment on a NATS server: ``""`` (none) or a safe token."""

    name: str = ""

    def __post_init__(self) -> None:
        if self.name:
            validate_id(self.name, "namespace")

    def subject(self, subject: str) -> str:
        """``subject`` under this namespace."""
        return f"{self.name}.{subject}" if self.name else subject

    def stream(self, name: str) -> str:
        """A stream name under this namespace (stream names cannot hold ``.``)."""
        return f"{self.name}_{name}" if self.name else name

    def bucket(self, name: str) -> str:
        """A KV bucket name under this namespace."""
        return f"{self.name}_{name}" if self.name else name

    def strip(self, subject: str) -> str:
        """The subject without this namespace's prefix."""
        prefix = f"{self.name}." if self.name else ""
        if prefix and subject.startswith(prefix):
            return subject[len(prefix) :]
        return subject


def event_token(subject: str) -> str:
    """The event token of a job event's subject in any form, under any namespace: its last token, or
    the one before when the last is a slot (JOBS' stored form, ``jobs.{t}.{j}.{event}.{slot}``). No
    event name is a number."""
    head, _, last = subject.rpartition(".")
    return head.rpartition(".")[2] if last.isdigit() and head else last


def stored_subject(ns: Namespace, subject: str) -> str:
    """What names the messages JOBS stores for the published ``subject`` (a get of its last message, a
    fence on it, a filter): a job event's ``jobs.{t}.{j}.{event}`` with its slot token (``.*``, one slot
    per job: exact); any other subject (an upload's, a filter with ``>``) as it is."""
    tokens = ns.strip(subject).split(".")
    return f"{subject}.*" if len(tokens) == 4 and tokens[0] == "jobs" and tokens[3] != ">" else subject


def job_slot_transform(ns: Namespace) -> tuple[str, str]:
    """JOBS' ``subject_transform`` (source, destination): each job event stored with its slot token."""
    dest = f"jobs.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}.{{{{partition({JOB_SLOTS},1,2)}}}}"
    return ns.subject("jobs.*.*.*"), ns.subject(dest)


NO_NAMESPACE = Namespace()
"""The empty namespace: the plain v1 subjects."""


@dataclass(frozen=True, slots=True)
class Subjects:
    """Builds every v1 subject, validating each id it is given."""

    ns: Namespace = NO_NAMESPACE

    # -- jobs ---------------------------------------------------------------------------
    def job_event(self, tenant: str, job_id: str, event: str) -> str:
        """``jobs.{tenant}.{job_id}.{event}``: one job event."""
        if event not in JOB_EVENT_NAMES:
            raise ValueError(f"unknown job event {event!r}")
        return self.ns.subject(f"jobs.{validate_id(tenant, 'tenant')}.{validate_id(job_id, 'job id')}.{event}")

    def job_events(self, tenant: str, job_id: str) -> str:
        """Filter for every event of one job, as published and as JOBS stores it (its slot token)."""
        return self.ns.subject(f"jobs.{validate_id(tenant, 'tenant')}.{validate_id(job_id, 'job id')}.>")

    def stored_job_event(self, tenant: str, job_id: str, event: str) -> str:
        """One job event as JOBS stores it, ``jobs.{tenant}.{job_id}.{event}.*`` (its slot token, one per
        job: exact): what a get of its last message or a fence on its subject names. The published
        subject names nothing stored, so a fence ``(subject, 0)`` on it would always pass."""
        return stored_subject(self.ns, self.job_event(tenant, job_id, event))

    def job_slot(self, slot: int) -> str:
        """Filter for the stored events of every job in ``slot`` (:data:`JOB_SLOTS`)."""
        return self.ns.subject(f"jobs.*.*.*.{slot}")

    def tenant_jobs(self, tenant: str) -> str:
        """Filter for every job event of one tenant."""
        return self.ns.subject(f"jobs.{validate_id(tenant, 'tenant')}.>")

    def all_jobs(self) -> str:
        """Filter for every job event."""
        return self.ns.subject("jobs.>")

    def job_record(self, tenant: str, job_id: str) -> str:
        """``records.{tenant}.{job_id}``: each revision of the job's record, once KV ``jobs`` stored it."""
        return self.ns.subject(f"{JOB_RECORDS}.{validate_id(tenant, 'tenant')}.{validate_id(job_id, 'job id')}")

    # -- uploads ------------------------------------------------------------------------
    def upload_completed(self, tenant: str, upload_id: str) -> str:
        """``uploads.{tenant}.{upload_id}.completed``."""
        return self.ns.subject(
            f"uploads.{validate_id(tenant, 'tenant')}.{validate_id(upload_id, 'upload id')}.completed"
        )

    def all_uploads(self) -> str:
        """Filter for every upload event."""
        return self.ns.subject("uploads.>")

    # -- sessions -----------------------------------------------------------------------
    def session_frames(self, tenant: str, session_id: str) -> str:
        """``sessions.{tenant}.{session_id}.frames``: live frames."""
        return self.ns.subject(
            f"sessions.{validate_id(tenant, 'tenant')}.{validate_id(session_id, 'session id')}.frames"
        )

    def session_control(self, tenant: str, session_id: str) -> str:
        """``sessions.{tenant}.{session_id}.control``: stop and reset."""
        return self.ns.subject(
            f"sessions.{validate_id(tenant, 'tenant')}.{validate_id(session_id, 'session id')}.control"
        )

    # -- robots -------------------------------------------------------------------------
    def robot_joints(self, tenant: str, robot_id: str) -> str:
        """``robots.{tenant}.{robot_id}.joints``: joint-angle samples."""
        return self.ns.subject(f"robots.{validate_id(tenant, 'tenant')}.{validate_id(robot_id, 'robot id')}.joints")

    # -- webhooks -----------------------------------------------------------------------
    def webhook_dead(self, tenant: str, endpoint_id: str) -> str:
        """``webhooks.{tenant}.{endpoint_id}.dead``: a dead-lettered delivery."""
        return self.ns.subject(
            f"webhooks.{validate_id(tenant, 'tenant')}.{validate_id(endpoint_id, 'endpoint id')}.dead"
        )

    def webhook_deliver(self, tenant: str, endpoint_id: str) -> str:
        """``webhooks.{tenant}.{endpoint_id}.deliver``: the delivery queue of one endpoint."""
        return self.ns.subject(
            f"webhooks.{validate_id(tenant, 'tenant')}.{validate_id(endpoint_id, 'endpoint id')}.deliver"
        )

    def webhook_kick(self, tenant: str, endpoint_id: str) -> str:
        """``webhooks.{tenant}.{endpoint_id}.kick``: core NATS (no stream), "work waits in this queue"."""
        return self.ns.subject(
            f"webhooks.{validate_id(tenant, 'tenant')}.{validate_id(endpoint_id, 'endpoint id')}.kick"
        )

    def all_webhook_kicks(self) -> str:
        """Filter for every queue's kick."""
        return self.ns.subject("webhooks.*.*.kick")

    # -- dead letters -------------------------------------------------------------------
    def dead_letter(self, service: str, consumer: str) -> str:
        """``deadletter.{service}.{consumer}``: messages a consumer gave up on (stream DEADLETTER)."""
        return self.ns.subject(f"deadletter.{validate_id(service, 'service')}.{validate_id(consumer, 'consumer')}")
