"""The dispatcher's settings (``GPURELAY_*``): the shared base, and what its fold, scheduling, backends
and retention read."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from contracts.runs import PROGRESS_MIN_INTERVAL_S
from contracts.subjects import JOB_SLOTS
from services.common.config import PLACEHOLDER_PREFIX, BaseServiceSettings

LINGER_SHARE_OF_ACK_WAIT = 0.2
"""The most of the event ack wait a fold batch may linger (the fold has the rest: 80 % from its arrival)."""


class DispatcherSettings(BaseServiceSettings):
    """Job state, routing and backends."""

    host: str = "127.0.0.1"
    port: int = Field(default=8002, ge=0, le=65535, description="Health endpoint of `gpurelay dispatcher`.")
    route_table: Path = Path("deploy/routes.yaml")
    route_profile: Literal["dev", "prod"] = "dev"
    local_pool_size: int = Field(default=2, ge=1, le=64)
    local_workers_die_with_dispatcher: bool = Field(
        default=False,
        description="Pool workers end when the dispatcher dies (gpurelay dev, whose NATS dies with it); "
        "else a busy worker finishes its attempt and reports straight to NATS.",
    )
    local_worker_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment the local pool's workers get on top of the dispatcher's "
        "(gpurelay dev: the synthetic arm's URDF for splat sessions).",
    )
    local_worker_scratch_dir: Path | None = Field(
        default=None,
        description="Where the local pool's workers keep their temporary files, a folder per worker removed once "
        "it ends (unset: the system's temporary folder); the folder is the worker's TMPDIR, whatever "
        "local_worker_env says.",
    )
    local_worker_nats_user: str | None = Field(
        default=None,
        description="The NATS user the local pool's workers connect as (the worker role's; unset: the dispatcher's "
        "own).",
    )
    local_worker_nats_password: SecretStr | None = Field(default=None, description="That user's password.")
    local_worker_superseded_grace_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a pool worker whose attempt was dispatched again elsewhere "
        "waits for its workload to stop before it ends its process group (one that never checks for a cancel).",
    )
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    progress_min_interval_s: float = Field(
        default=PROGRESS_MIN_INTERVAL_S,
        ge=0,
        le=60,
        description="The least time between two job.progress a worker sends (0: every one; the last always goes).",
    )
    heartbeat_misses: int = Field(default=3, ge=1)
    artifact_retention_hours: float = Field(default=48.0, gt=0)
    recording_retention_hours: float = Field(
        default=48.0, gt=0, description="A session's recording (its frames' copies) goes this long after it ended."
    )
    ingest_token_secret: SecretStr = SecretStr(PLACEHOLDER_PREFIX + "ingest-secret")
    modal_environment: str | None = None
    event_ack_wait_s: float = Field(default=30.0, gt=0, description="Redelivery of an un-acked job event.")
    ticket_ack_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="A held dispatch ticket is re-adopted this long after its holder died.",
    )
    retention_sweep_interval_s: float = Field(default=3600.0, gt=0)
    event_max_deliver: int = Field(
        default=5, ge=1, le=1000, description="Deliveries of a job or upload event before it is dead-lettered."
    )
    event_retry_delay_s: float = Field(
        default=0.2, gt=0, description="Redelivery delay after a failed event (doubled each time, up to its ack wait)."
    )
    ticket_max_deliver: int = Field(
        default=20, ge=2, le=1000, description="Deliveries of a dispatch ticket (adoptions too) before dead letter."
    )
    ticket_retry_delay_s: float = Field(default=1.0, gt=0, description="Redelivery delay after a failed ticket.")
    created_republish_after_s: float = Field(
        default=60.0, gt=0, description="A record still `created` this long with no job.created gets it published."
    )
    created_sweep_interval_s: float = Field(default=15.0, gt=0, description="How often such records are looked for.")
    fold_audit_after_s: float = Field(
        default=30.0, gt=0, description="A job not terminal and unchanged this long is checked against its stream."
    )
    fold_audit_interval_s: float = Field(default=15.0, gt=0, description="How often the fold audit sweeps.")
    fold_audit_per_sweep: int = Field(default=50, ge=1, le=10_000, description="Records audited per sweep at most.")
    fold_audit_candidates: int = Field(
        default=100_000, ge=1, le=10_000_000, description="Unmoving records the audit remembers (oldest kept)."
    )
    fold_audit_max_events: int = Field(
        default=10_000, ge=1, le=1_000_000, description="A job with more events than this is not audited (logged)."
    )
    fold_refolds_waiting: int = Field(
        default=10_000, ge=1, le=1_000_000,
        description="Jobs waiting to be folded again after a redelivery; more are dropped (logged).",
    )  # fmt: skip
    fold_refold_marks_every_s: float = Field(
        default=300.0, gt=0, le=86_400,
        description="How often a replica reads KV fold_refolds again and folds again the jobs marked there that it "
        "does not hold (left by a replica that died, or by a refold given up).",
    )  # fmt: skip
    tenant_weights: dict[str, float] = Field(
        default_factory=dict,
        description='Fair-share weight per tenant (JSON, e.g. {"acme": 3}); a kind\'s slots are shared by weight.',
    )
    scheduling_policy: Literal["fair", "fifo"] = Field(
        default="fair", description="fair: weighted fair share, then priority; fifo: oldest queued first (a baseline)."
    )
    queue_sweep_interval_s: float = Field(
        default=0.5, gt=0, description="How often a replica gives due queued jobs that lack a dispatch ticket one."
    )
    claim_check_after_s: float = Field(
        default=10.0, gt=0,
        description="A queue entry claimed this long is checked against DISPATCH (then after twice as long each "
        "time, up to 10 minutes): one whose ticket is gone is let go, to get a ticket again.",
    )  # fmt: skip
    claim_check_interval_s: float = Field(default=5.0, gt=0, description="How often claims are looked at.")
    tenant_weight_default: float = Field(default=1.0, gt=0, description="The weight of a tenant not in tenant_weights.")
    queue_position_top: int = Field(
        default=10, ge=0, le=1000,
        description="job.position is sent each time a job moves up while among the first N of its tenant's queue "
        "of the kind (0: none as it moves up; its first place comes in job.queued, a retry's in a job.position).",
    )  # fmt: skip
    queue_position_interval_s: float = Field(
        default=1.0, ge=0, description="Queue positions of one tenant's kind are updated at most this often."
    )
    tally_flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often a replica writes the GPU-seconds (daily quota) and run times (ETA) of ended attempts.",
    )
    eta_window: int = Field(default=50, ge=1, le=1000, description="Run times kept per kind and input size (ETA).")
    priority_ageing_s: float = Field(
        default=60.0, ge=0, description="A queued job gains one priority level per this many seconds waited (ageing)."
    )
    fold_partitions: int = Field(
        default=8,
        ge=0,
        le=JOB_SLOTS,
        description="Partitions of the fold by job (parallel, each job in order); 0: one serial fold consumer.",
    )
    fold_batch: int = Field(
        default=512,
        ge=1,
        le=10_000,
        description="Events a replica folds per batch of one partition (its consumer's max_ack_pending).",
    )
    fold_pin_hold_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long a replica keeps a fold partition before it lets another take it (0: after each batch).",
    )
    fold_linger_s: float = Field(
        default=0.25,
        ge=0,
        le=5,
        description="How long a fold batch of only progress-like events (a queueing and launch: queued, "
        "dispatched, started; artifacts, session results) waits for more (one record write for all); at most a "
        "fifth of event_ack_wait_s.",
    )
    fold_max_deliver: int = Field(
        default=100,
        ge=2,
        le=10_000,
        description="Deliveries of a job event to a fold partition before it is dead-lettered. Only a batch given back "
        "counts (NATS or KV away past its deadline, about 0.8 x event_ack_wait_s each; a replica that died holding "
        "it): a failing event is retried in place, up to event_max_deliver times.",
    )
    fold_record_cache: int = Field(
        default=1_000,
        ge=0,
        le=100_000,
        description="Job records a replica keeps per fold partition while it holds the partition (0: none).",
    )

    @model_validator(mode="after")
    def _linger_within_the_ack_wait(self) -> DispatcherSettings:
        """A lingering batch's events wait unacknowledged, and the batch is folded and acked within 80 % of the
        ack wait from its arrival: a longer linger leaves the fold too little of it, and one past the ack wait
        has the server redeliver what lingers (a redelivered ``job.queued`` ended a launch's wait)."""
        if self.fold_linger_s > LINGER_SHARE_OF_ACK_WAIT * self.event_ack_wait_s:
            raise ValueError(
                f"GPURELAY_FOLD_LINGER_S ({self.fold_linger_s:g} s) may be at most {LINGER_SHARE_OF_ACK_WAIT:g} x "
                f"GPURELAY_EVENT_ACK_WAIT_S ({self.event_ack_wait_s:g} s)"
            )
        return self
