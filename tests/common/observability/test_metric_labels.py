"""Label values stay bounded: event types from the registry, webhook endpoints capped."""

from __future__ import annotations

from services.common.observability.metric_labels import OTHER, EndpointLabels, event_type_label, subject_event_label


def test_webhook_endpoints_beyond_the_cap_share_one_label_and_job_hooks_are_one() -> None:
    labels = EndpointLabels(limit=5)
    seen = {labels("acme", f"whe_{n}") for n in range(100)}
    assert seen == {f"acme/whe_{n}" for n in range(5)} | {OTHER}
    assert labels("acme", "whe_3") == "acme/whe_3", "a named endpoint keeps its label"
    assert {labels("acme", f"jobhook-job_{n}", job_hook=True) for n in range(50)} == {"jobhooks"}
    assert len(labels.named) == 5


def test_event_types_are_the_registrys() -> None:
    assert event_type_label("job.succeeded") == "job.succeeded"
    assert event_type_label("job.x" * 10) == OTHER
    assert event_type_label(None) == OTHER
    assert subject_event_label("t1.jobs.acme.job_1.progress") == "job.progress"
    assert subject_event_label("jobs.acme.job_1.snapshot") == "session.snapshot"
    assert subject_event_label("uploads.acme.upl_1.completed") == "upload.completed"
    assert subject_event_label("jobs.acme.job_1.whatever") == OTHER


def test_a_stored_job_subject_is_labelled_by_its_event_not_its_slot() -> None:
    """JOBS stores a job event with a slot token after the event (consumers deliver that subject)."""
    assert subject_event_label("t1.jobs.acme.job_1.progress.7") == "job.progress"
    assert subject_event_label("jobs.acme.job_1.canceled.31") == "job.canceled"
    assert subject_event_label("jobs.acme.job_1.snapshot.0") == "session.snapshot"
    assert subject_event_label("jobs.acme.job_1.whatever.3") == OTHER
