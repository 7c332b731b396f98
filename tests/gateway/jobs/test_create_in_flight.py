"""A job's first record whose create is still in flight, on a 3-node cluster.

``POST /v1/jobs`` with an Idempotency-Key whose first try timed out (503: the bucket's leader lost its
quorum, and holds the create in flight) is tried again by the client with the same key, so the same
job id. The leader refuses that create while the first is in flight (10164), and nats-py's
``kv.create`` re-read the key, found nothing yet, and raised ``KeyNotFoundError``: a 500. It is a 503
with ``Retry-After`` now, and once the quorum is back the record is the first try's.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from services.common.auth.apikeys import Principal
from services.common.http.problem import ProblemError
from services.gateway.jobs.routes import _create
from tests.support.dispatcher import POSE
from tests.support.stopping import on_bucket_leader, once_created, pausable_cluster, quorum_lost


async def test_a_retried_create_while_the_first_is_in_flight_is_a_503_not_a_500(tmp_path: Path) -> None:
    async with pausable_cluster(tmp_path / "cluster") as cluster, on_bucket_leader(cluster, "jobs") as (nc, leader):
        kv = await nc.jetstream(timeout=1.0).key_value("jobs")
        state: Any = SimpleNamespace(kv=SimpleNamespace(jobs=kv))  # what the create reads and writes
        owner, job_id, spec = Principal(tenant="acme", key_id="key_1"), new_id("job"), parse_job_spec(POSE)
        with quorum_lost(cluster, leader):
            with pytest.raises(TimeoutError):  # the first try: proposed, unanswered (the app's 503)
                await _create(state, owner, job_id, spec, replay=False, upload_sizes={})
            with pytest.raises(ProblemError) as retried:  # the client's retry, same Idempotency-Key
                await _create(state, owner, job_id, spec, replay=True, upload_sizes={})
        assert retried.value.status == 503
        assert cast(dict[str, str], retried.value.headers)["Retry-After"]
        kv = await nc.jetstream(timeout=10.0).key_value("jobs")
        stored = await once_created(kv, tenant_key("acme", job_id))
        assert JobRecord.model_validate_json(stored).id == job_id  # the first try's record
