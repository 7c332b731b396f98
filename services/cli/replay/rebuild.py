"""``gpurelay replay --rebuild jobs``: KV ``jobs`` folded afresh from JOBS, compared with the live one.

The dispatcher's own fold (:func:`services.dispatcher.fold.records.apply`, priced from the route table as
the dispatcher prices it) runs over ``jobs.>`` (or ``--subject``) up to the last message stored when
the rebuild began, into memory and then into a fresh bucket ``jobs_rebuild`` (replaced on every run).
Each record is compared with the live bucket: the same, different (which fields), missing from the
live bucket, or only in the live bucket (a record whose ``job.created`` is not, or no longer, in the
stream: left alone).

``--apply`` swaps the rebuilt records in, one key at a time with compare-and-set: the job's events
are folded again right then, so a record the running dispatcher moved in between is never put back,
and a conflict re-reads and retries. Then the fresh bucket is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from contracts.envelope import EventEnvelope
from contracts.ids import InvalidIdError, tenant_key
from contracts.job_record import JobRecord
from contracts.route_table import DEFAULT_ROUTES, load_route_table
from contracts.streams import JOBS, KV_JOBS, KV_JOBS_REBUILD
from contracts.subjects import Subjects
from services.cli.replay.progress import replay_progress
from services.cli.replay.reader import consumer_config, read_range
from services.common.config import BaseServiceSettings
from services.common.nats.kv import kv_entries
from services.common.nats.kv_writes import kv_write
from services.dispatcher.fold.records import Pricing, apply, route_pricing

REBUILD_BUCKET = KV_JOBS_REBUILD
APPLY_ATTEMPTS = 10
WRITE_BATCH = 256


def route_prices(path: Path, profile: str) -> Pricing:
    """The dispatcher's pricing: the route table's ``price_per_gpu_hour`` of each kind in ``profile``."""
    table = load_route_table(path if path.exists() else DEFAULT_ROUTES)
    return route_pricing({str(kind): route.price_per_gpu_hour for kind, route in table.profile(profile).items()})


@dataclass
class Rebuild:
    """The outcome of a rebuild: what differs, and what was swapped in."""

    rebuilt: int = 0
    same: int = 0
    different: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    only_live: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    projection: str | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON summary line."""
        return {
            "rebuilt": self.rebuilt,
            "same": self.same,
            "different": self.different,
            "missing": self.missing,
            "only_live": self.only_live,
            "applied": self.applied,
            "projection": self.projection,
        }


async def fold_jobs(
    nc: NatsClient, settings: BaseServiceSettings, subject: str, pricing: Pricing, *, show_progress: bool = True
) -> dict[str, JobRecord]:
    """Every job's record as the dispatcher's fold makes it from the events on ``subject``."""
    records: dict[str, JobRecord] = {}
    with replay_progress("folding JOBS", disable=not show_progress) as progress:
        async for msg in read_range(nc, settings, JOBS, subject, consumer_config(None, None), on_start=progress.total):
            progress.advance()
            try:
                event = EventEnvelope.from_json_bytes(msg.data)
                key = tenant_key(event.tenant, event.job_id) if event.job_id else None
            except (ValidationError, InvalidIdError):
                continue
            if key is not None and (moved := apply(records.get(key), event, pricing)) is not None:
                records[key] = moved
    return records


def key_filter(subject: str) -> str:
    """The KV ``jobs`` keys a JOBS subject filter covers (``jobs.acme.>`` → ``acme.*``)."""
    tokens = subject.split(".")
    tenant = tokens[1] if len(tokens) > 1 and tokens[1] not in ("*", ">") else "*"
    job = tokens[2] if len(tokens) > 2 and tokens[1] != ">" and tokens[2] not in ("*", ">") else "*"
    return f"{tenant}.{job}"


def changed_fields(live: dict[str, Any], rebuilt: dict[str, Any]) -> list[str]:
    """The top-level fields whose values differ."""
    return sorted(name for name in live.keys() | rebuilt.keys() if live.get(name) != rebuilt.get(name))


async def fresh_bucket(nc: NatsClient, settings: BaseServiceSettings, records: dict[str, JobRecord]) -> str:
    """Write ``records`` into a new ``jobs_rebuild`` bucket (an older one is replaced); its name."""
    js, name = nc.jetstream(), settings.ns.bucket(REBUILD_BUCKET)
    with contextlib.suppress(BucketNotFoundError, NotFoundError):
        await js.delete_key_value(name)
    config = KeyValueConfig(
        bucket=name,
        history=1,
        storage=StorageType.FILE,
        description="gpurelay replay --rebuild jobs",
        replicas=settings.nats_replicas,
    )
    kv = await js.create_key_value(config)
    items = list(records.items())
    for start in range(0, len(items), WRITE_BATCH):
        batch = items[start : start + WRITE_BATCH]
        await asyncio.gather(*(kv.put(key, record.model_dump_json().encode()) for key, record in batch))
    return name


async def compare(live: KeyValue, records: dict[str, JobRecord], keys: str) -> Rebuild:
    """How the live bucket's records (under ``keys``) differ from ``records``."""
    result = Rebuild(rebuilt=len(records))
    seen: set[str] = set()
    for item in await kv_entries(live, keys):
        seen.add(item.key)
        rebuilt = records.get(item.key)
        if rebuilt is None:
            result.only_live.append(item.key)
            continue
        try:
            current = JobRecord.model_validate_json(item.value)
        except ValidationError:
            result.different[item.key] = ["(not a job record)"]
            continue
        if current == rebuilt:
            result.same += 1
        else:
            result.different[item.key] = changed_fields(
                current.model_dump(mode="json"), rebuilt.model_dump(mode="json")
            )
    result.missing = sorted(records.keys() - seen)
    result.only_live.sort()
    return result


async def swap_in(nc: NatsClient, settings: BaseServiceSettings, live: KeyValue, key: str, pricing: Pricing) -> bool:
    """Make the live record of ``key`` its fold right now (compare-and-set); whether it was written."""
    tenant, _, job_id = key.partition(".")
    for _ in range(APPLY_ATTEMPTS):
        try:
            entry = await live.get(key)
            revision, value = entry.revision, entry.value
        except KeyNotFoundError:
            revision, value = None, None
        events = Subjects().job_events(tenant, job_id)  # namespace-relative; both forms (JOBS adds a slot token)
        folded = await fold_jobs(nc, settings, events, pricing, show_progress=False)
        record = folded.get(key)
        if record is None or (value is not None and _record(value) == record):
            return False
        if await kv_write(live, key, record.model_dump_json().encode(), revision) is None:
            continue
        return True
    raise RuntimeError(f"{key}: the live record kept changing; try again")


def _record(value: bytes) -> JobRecord | None:
    try:
        return JobRecord.model_validate_json(value)
    except ValidationError:
        return None


async def rebuild_jobs(
    nc: NatsClient, settings: BaseServiceSettings, subject: str, pricing: Pricing, *, apply_changes: bool
) -> Rebuild:
    """Fold, write the fresh projection, compare; with ``apply_changes``, swap the differences in."""
    records = await fold_jobs(nc, settings, subject, pricing)
    projection = await fresh_bucket(nc, settings, records)
    live = await nc.jetstream().key_value(settings.ns.bucket(KV_JOBS))
    result = await compare(live, records, key_filter(subject))
    result.projection = projection
    if apply_changes:
        for key in sorted([*result.different, *result.missing]):
            if await swap_in(nc, settings, live, key, pricing):
                result.applied.append(key)
        await nc.jetstream().delete_key_value(projection)
        result.projection = None
    return result
