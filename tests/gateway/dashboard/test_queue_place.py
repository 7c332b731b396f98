"""A queued job's place in line on its page and in the jobs list, in the CLI's words (no browser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.api.jobs import JobOut
from contracts.job_parts import JobStatus, QueuePlace
from services.gateway.dashboard.render import TEMPLATES
from services.gateway.dashboard.results import results_view
from tests.gateway.dashboard.test_results import job


def queued(place: QueuePlace | None) -> JobOut:
    return job("pose", []).model_copy(update={"status": JobStatus.QUEUED, "queue": place})


def test_a_queued_jobs_page_and_row_say_its_place_in_the_clis_words() -> None:
    place = QueuePlace(position=3, eta_s=40.2, eta_at=datetime.now(UTC) + timedelta(seconds=40))
    record = queued(place)
    html = TEMPLATES.get_template("job.html").render(job=record, view=results_view(record), terminal=False, viewer=None)
    assert '<p id="job-queue" aria-live="polite" >3rd in line, about 40 s</p>' in html
    rows = TEMPLATES.get_template("job_rows.html").render(jobs=[record])
    assert '<small class="queue-place">3rd in line, about 40 s</small>' in rows


def test_a_job_out_of_the_queue_shows_no_place_but_keeps_the_line_for_live_events() -> None:
    record = queued(None)
    html = TEMPLATES.get_template("job.html").render(job=record, view=results_view(record), terminal=False, viewer=None)
    assert '<p id="job-queue" aria-live="polite" hidden></p>' in html
    assert "queue-place" not in TEMPLATES.get_template("job_rows.html").render(jobs=[record])
    place = QueuePlace(position=21, eta_s=None)
    assert "21st in line<" in TEMPLATES.get_template("job_rows.html").render(jobs=[queued(place)])
