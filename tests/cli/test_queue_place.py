"""A queued job's place (the scheduler's ``job.position`` / the record's ``queue``) as the CLI says it."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from services.cli.jobs import record_table
from services.cli.submit import _describe
from services.common.queue_place import ordinal, queue_place_text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (102, "102nd"),
        (111, "111th"),
    ],
)
def test_ordinal(n: int, text: str) -> None:
    assert ordinal(n) == text


@pytest.mark.parametrize(
    ("place", "text"),
    [
        ({"position": 3, "eta_s": 40.2}, "3rd in line, about 40 s"),
        ({"position": 1, "eta_s": None}, "1st in line"),
        ({"position": 2}, "2nd in line"),
        ({"position": 7, "eta_s": 600}, "7th in line, about 10 min"),
        ({"position": 40, "eta_s": 9000}, "40th in line, about 2.5 h"),
    ],
)
def test_queue_place_text(place: dict[str, object], text: str) -> None:
    assert queue_place_text(place) == text


def test_the_watch_line_of_a_position_event() -> None:
    assert _describe("job.position", {"position": 2, "eta_s": 12.0}) == "queued: 2nd in line, about 12 s"
    assert _describe("job.queued", {"position": 1, "eta_s": None}) == "queued: 1st in line"  # its first place
    assert _describe("job.queued", {}) == "queued"


def test_the_record_table_shows_the_queue_only_while_queued() -> None:
    def rendered(job: dict[str, object]) -> str:
        out = io.StringIO()
        Console(file=out, width=120).print(record_table(job))
        return out.getvalue()

    queued = {"id": "j1", "status": "queued", "kind": "pose", "queue": {"position": 3, "eta_s": 40.0}}
    assert "3rd in line, about 40 s" in rendered(queued)
    assert "in line" not in rendered({**queued, "status": "running", "queue": None})
