"""``GET /v1/kinds``'s contract covers every kind: a kind added to ``JobKind`` without its result
description would make the route (and the dashboard's new-job form) fail for every caller."""

from __future__ import annotations

import pytest

from contracts.api.kinds import RESULTS, KindOut, kind_inputs, params_schema
from contracts.specs.jobs import SESSION_KINDS, JobKind


def test_every_kind_has_its_result_described() -> None:
    assert set(RESULTS) == set(JobKind)


@pytest.mark.parametrize("kind", list(JobKind))
def test_each_kind_is_described_as_the_route_describes_it(kind: JobKind) -> None:
    summary, result = RESULTS[kind]
    out = KindOut(
        kind=kind, session=kind in SESSION_KINDS, summary=summary, params_schema=params_schema(kind),
        inputs=kind_inputs(kind), result=result, gpus=[], price_per_gpu_second=0.0, stages=[],
    )  # fmt: skip
    assert out.params_schema.get("type") == "object"
    assert summary
