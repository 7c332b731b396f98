"""services.common.observability.logging: JSON fields, context through asyncio tasks, no secret in the output."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from services.common.config import BaseServiceSettings
from services.common.observability.logging import MASK, log_context, scrub, setup_logging

API_KEY = "gr_live_4f9Kq2ZxP0aB-_77"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJl"


class Capture:
    """The root logger writing into a StringIO, one parsed JSON object per line."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        return [r for r in parsed if r["logger"] != "asyncio"]


@pytest.fixture
def capture() -> Iterator[Capture]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = setup_logging("DEBUG", fmt="json", service="test-svc", stream=stream)
    yield Capture(stream)
    root.removeHandler(handler)
    root.setLevel(level)


def test_json_fields_present(capture: Capture) -> None:
    logging.getLogger("gpurelay.test").info("hello %s", "world", extra={"attempt": 2})
    (record,) = capture.records()
    assert record["message"] == "hello world"
    assert record["level"] == "INFO"
    assert record["logger"] == "gpurelay.test"
    assert record["service"] == "test-svc"
    assert record["attempt"] == 2
    assert "time" in record
    assert "tenant" not in record


def test_level_filters_below_threshold() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = setup_logging("WARNING", fmt="json", stream=stream)
    try:
        logging.getLogger("gpurelay.test").info("quiet")
        logging.getLogger("gpurelay.test").warning("loud")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["loud"]


def test_setup_twice_keeps_one_handler(capture: Capture) -> None:
    stream = io.StringIO()
    handler = setup_logging("INFO", fmt="json", stream=stream)
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "gpurelay"]
    logging.getLogger("x").info("once")
    logging.getLogger().removeHandler(handler)
    assert ours == [handler]
    assert len(stream.getvalue().splitlines()) == 1
    assert capture.text == ""


def test_settings_choose_level_and_format() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    settings = BaseServiceSettings(log_level="debug", log_format="console")
    handler = setup_logging(settings, service="svc", stream=stream)
    try:
        with log_context(tenant="acme"):
            logging.getLogger("gpurelay.c").debug("readable")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    line = stream.getvalue().strip()
    assert "DEBUG" in line
    assert "gpurelay.c: readable" in line
    assert "tenant=acme" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_auto_format_is_json_off_a_tty() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = setup_logging("INFO", stream=stream)
    try:
        logging.getLogger("a").info("machine readable")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert json.loads(stream.getvalue())["message"] == "machine readable"


def test_context_fields_and_nesting(capture: Capture) -> None:
    log = logging.getLogger("gpurelay.ctx")
    with log_context(tenant="acme", job_id="j1"):
        log.info("outer")
        with log_context(event_id="e1"):
            log.info("inner")
        log.info("after inner")
    log.info("outside")
    outer, inner, after, outside = capture.records()
    assert (outer["tenant"], outer["job_id"]) == ("acme", "j1")
    assert "event_id" not in outer
    assert (inner["tenant"], inner["job_id"], inner["event_id"]) == ("acme", "j1", "e1")
    assert "event_id" not in after
    assert after["job_id"] == "j1"
    assert not {"tenant", "job_id", "event_id"} & outside.keys()


async def test_context_follows_asyncio_tasks(capture: Capture) -> None:
    log = logging.getLogger("gpurelay.tasks")

    async def work(name: str) -> None:
        await asyncio.sleep(0)
        log.info("working", extra={"worker": name})

    async def job(tenant: str, job_id: str) -> None:
        with log_context(tenant=tenant, job_id=job_id):
            await asyncio.sleep(0)
            await asyncio.create_task(work(job_id))

    await asyncio.gather(job("acme", "ja"), job("globex", "jb"), job("initech", "jc"))
    by_worker = {r["worker"]: r for r in capture.records()}
    assert {k: (r["tenant"], r["job_id"]) for k, r in by_worker.items()} == {
        "ja": ("acme", "ja"),
        "jb": ("globex", "jb"),
        "jc": ("initech", "jc"),
    }


def test_secrets_scrubbed_from_message_and_args(capture: Capture) -> None:
    log = logging.getLogger("gpurelay.secrets")
    log.info("key %s created", API_KEY)
    log.info("webhook secret is " + WEBHOOK_SECRET)
    log.info("calling with Authorization: Bearer %s", TOKEN)
    log.info("header bearer %s", TOKEN)
    log.info("GET https://blobs.example/b/k?expires=123&sig=deadbeefcafe&x=1")
    log.info("s3 https://s3/b/k?X-Amz-Signature=abc123&X-Amz-Expires=60")
    log.info("headers %s", {"Authorization": "Basic dXNlcjpwYXNz", "accept": "*/*"})
    log.info("settings %s", BaseServiceSettings(signing_secret=SecretStr("s3cr3t-signing")))
    text = capture.text
    leaked = (API_KEY, WEBHOOK_SECRET, TOKEN, "deadbeefcafe", "abc123", "dXNlcjpwYXNz", "s3cr3t-signing")
    for secret in leaked:
        assert secret not in text
    messages = [r["message"] for r in capture.records()]
    assert messages[0] == f"key gr_{MASK} created"
    assert messages[3] == f"header Bearer {MASK}"
    assert "expires=123" in messages[4]
    assert f"sig={MASK}&x=1" in messages[4]
    assert "X-Amz-Expires=60" in messages[5]
    assert "'accept': '*/*'" in messages[6]


def test_secrets_scrubbed_from_extras(capture: Capture) -> None:
    logging.getLogger("gpurelay.extras").warning(
        "delivery failed",
        extra={
            "secret": SecretStr("plain-secret-value"),
            "endpoint": {"url": "https://hook.example/?token=abcdef", "signing_secret": "raw-secret"},
            "headers": {"authorization": "Bearer " + TOKEN, "content-type": "application/json"},
            "keys": [API_KEY, "ok"],
            "attempt": 3,
        },
    )
    (record,) = capture.records()
    for secret in ("plain-secret-value", "abcdef", "raw-secret", TOKEN, API_KEY):
        assert secret not in capture.text
    assert record["secret"] == MASK
    assert record["endpoint"] == {"url": f"https://hook.example/?token={MASK}", "signing_secret": MASK}
    assert record["headers"] == {"authorization": MASK, "content-type": "application/json"}
    assert record["keys"] == [f"gr_{MASK}", "ok"]
    assert record["attempt"] == 3


def test_secrets_scrubbed_from_tracebacks(capture: Capture) -> None:
    try:
        raise RuntimeError(f"upstream refused key {API_KEY}")
    except RuntimeError:
        logging.getLogger("gpurelay.exc").exception("failed")
    (record,) = capture.records()
    assert "RuntimeError" in record["exc_info"]
    assert API_KEY not in capture.text


def test_bad_format_arguments_do_not_raise(capture: Capture) -> None:
    logging.getLogger("gpurelay.bad").info("two %s %s", API_KEY)
    (record,) = capture.records()
    assert API_KEY not in capture.text
    assert "two" in record["message"]


def test_scrub_is_idempotent_and_leaves_plain_text() -> None:
    text = f"Authorization: Bearer {TOKEN} key={API_KEY} url=/x?sig=1"
    once = scrub(text)
    assert scrub(once) == once
    assert scrub("grade_level program_gr Authorization header missing") == (
        "grade_level program_gr Authorization header missing"
    )
