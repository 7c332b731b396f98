"""schemathesis against the committed OpenAPI, over real HTTP: no 5xx, responses match the schema.

Bounded: a few generated examples per operation, so the suite stays fast. Each operation runs as
tenant ``acme``. Left to their own suites: the blob routes (signed URLs, not API keys) and the
notifier's routes in the same document (SSE streams that stay open, webhook deliveries).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from services.cli.openapi import OPENAPI_PATH
from tests.support.gateway import Gateway, Tenant

MAX_EXAMPLES = 6
SKIPPED_PREFIXES = ("/v1/blobs/",)
NOTIFIER_PATHS = {"/v1/events", "/v1/jobs/{job_id}/events", "/v1/sessions/{session_id}/events"}
MAY_BE_UNAVAILABLE = {"/readyz"}
"""Its 503 is the documented answer when a probe times out (NATS slow on a loaded machine): the
response must still match the schema, but a 5xx there is not a server error."""


def checks_for(path: str) -> list[Any]:
    """What each response of ``path`` must pass."""
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance, status_code_conformance]
    return checks[1:] if path in MAY_BE_UNAVAILABLE else checks


@pytest.mark.timeout(240)
def test_no_server_errors_and_schema_conformance(gateway: Gateway, acme: Tenant) -> None:
    schema = schemathesis.openapi.from_dict(json.loads(OPENAPI_PATH.read_text()))
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises here, failing the test
        if operation.path.startswith(SKIPPED_PREFIXES) or operation.path in NOTIFIER_PATHS:
            continue
        if operation.path.endswith("/deliveries"):
            continue
        tried += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate(
                base_url=gateway.url,
                headers={"Authorization": f"Bearer {acme.key}"},
                checks=checks_for(case.operation.path),
                timeout=30,
            )

        exercise()
    assert tried >= 15
