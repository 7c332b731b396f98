"""Unit tests of the notifier's pure pieces: back-off, Retry-After, coalescing, job-webhook ids."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notifier.sse.stream import Coalescer, Filters, Item
from services.notifier.webhooks.actions import next_delay
from services.notifier.webhooks.sender import AttemptResult, parse_retry_after, sign_headers
from services.notifier.webhooks.targets import job_hook_id, job_webhook_secret

SCHEDULE = [0.0, 5.0, 300.0]


def test_next_delay_follows_the_schedule_then_gives_up() -> None:
    failed = AttemptResult(status=500)
    assert next_delay(SCHEDULE, 1, failed, jitter=0, retry_after_max_s=60) == 5.0
    assert next_delay(SCHEDULE, 2, failed, jitter=0, retry_after_max_s=60) == 300.0
    assert next_delay(SCHEDULE, 3, failed, jitter=0, retry_after_max_s=60) is None
    jittered = next_delay(SCHEDULE, 2, failed, jitter=0.1, retry_after_max_s=60)
    assert jittered is not None
    assert 270.0 <= jittered <= 330.0


def test_retry_after_replaces_the_schedule_and_is_capped() -> None:
    busy = AttemptResult(status=429, retry_after_s=120.0)
    assert next_delay(SCHEDULE, 1, busy, jitter=0.5, retry_after_max_s=60) == 60.0
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_signature_headers_carry_one_signature_per_secret() -> None:
    now = datetime.now(UTC)
    headers = sign_headers(["whsec_" + "A" * 44, "whsec_" + "B" * 44], "evt_1", b"{}", now)
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert [s[:3] for s in headers["webhook-signature"].split(" ")] == ["v1,", "v1,"]


def _item(seq: int, type_: str = "job.progress", job: str = "job_1") -> Item:
    return Item(seq=seq, type=type_, job_id=job, kind="pose", data="{}")


def test_coalescer_keeps_the_latest_progress_and_never_drops_other_events() -> None:
    c = Coalescer(per_s=2.0)
    assert c.offer(_item(1), now=0.0) == [_item(1)]
    assert c.offer(_item(2), now=0.1) == []
    assert c.offer(_item(3), now=0.2) == []  # replaces 2
    assert c.offer(_item(4, job="job_2"), now=0.2) == [_item(4, job="job_2")]  # another job
    assert c.wait_s(0.2) == 0.3
    assert c.due(0.3) == []
    assert c.due(0.5) == [_item(3)]
    assert c.offer(_item(5), now=0.6) == []
    assert c.offer(_item(6, "job.succeeded"), now=0.6) == [_item(5), _item(6, "job.succeeded")]
    assert Coalescer(per_s=0).offer(_item(7), now=0.0) == [_item(7)]


def test_filters_match_type_globs_and_kinds() -> None:
    assert Filters().keep(_item(1))
    assert Filters(types=("job.*",)).keep(_item(1))
    assert not Filters(types=("job.succeeded",)).keep(_item(1))
    assert not Filters(kinds=frozenset({"nerf"})).keep(_item(1))


def test_job_hook_ids_and_secrets() -> None:
    assert job_hook_id("job_1") == "jobhook-job_1"
    assert len(job_hook_id("j" * 64)) <= 64
    secret = job_webhook_secret(b"s", "acme")
    assert secret.startswith("whsec_")
    assert secret == job_webhook_secret(b"s", "acme") != job_webhook_secret(b"s", "globex")
