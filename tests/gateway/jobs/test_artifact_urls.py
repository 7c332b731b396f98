"""Download URLs are signed only for artifacts under their own job's results prefix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nats.js import JetStreamContext

from contracts.ids import new_id
from contracts.job_parts import Artifact, JobStatus
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Namespace
from services.common.storage import InvalidKeyError, check_result_key, result_key
from tests.gateway.jobs.test_jobs import write_record
from tests.support.gateway import Tenant

SPEC = parse_job_spec({"kind": "pose", "inputs": {"video": {"upload_id": "upl_1"}}})


async def test_an_artifact_outside_its_jobs_results_gets_no_url(
    acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    job_id, now = new_id("job"), datetime.now(UTC)
    record = JobRecord.new(job_id, "acme", SPEC, now)
    for status in (JobStatus.QUEUED, JobStatus.DISPATCHED, JobStatus.SUCCEEDED):
        record = record.transition(status, now)
    artifacts = (
        Artifact(name="mine.txt", key=result_key("", "acme", job_id, "mine.txt"), size=1),
        Artifact(name="theirs.txt", key="results/globex/job_9/secret.txt", size=1),
        Artifact(name="climb.txt", key=f"results/acme/{job_id}/../../globex/job_9/secret.txt", size=1),
        Artifact(name="upload.mp4", key="uploads/acme/upl_1/v.mp4", size=1),
    )
    await write_record(js, namespace, record.model_copy(update={"artifacts": artifacts}))
    read = (await acme.http.get(f"/v1/jobs/{job_id}")).json()
    urls = {a["name"]: a.get("url") for a in read["artifacts"]}
    assert urls["mine.txt"] is not None
    assert (urls["theirs.txt"], urls["climb.txt"], urls["upload.mp4"]) == (None, None, None)


@pytest.mark.parametrize("prefix", ["", "gw", "gw/", "a/b/"])
def test_one_function_decides_what_lies_under_a_jobs_results(prefix: str) -> None:
    good = result_key(prefix, "acme", "job_1", "stage/out.txt")
    assert check_result_key(prefix, "acme", "job_1", good) == good
    for bad in (
        good.replace("job_1", "job_2"),
        good.replace("acme", "globex"),
        good.replace("stage/", "stage/../../job_2/"),
        good.replace("stage/", "stage//"),
        good.replace("stage/", "%2e%2e/"),
        good.replace("stage/", "./"),
        good.removesuffix("stage/out.txt"),
        good.replace("out.txt", "out\x00.txt"),
        "x" + good,
    ):
        with pytest.raises(InvalidKeyError):
            check_result_key(prefix, "acme", "job_1", bad)
