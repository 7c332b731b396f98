"""Job specs: one valid spec per kind, the discriminator, bounds, inputs and webhooks."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.specs.job_inputs import InputRef
from contracts.specs.jobs import (
    BATCH_KINDS,
    SESSION_KINDS,
    SPEC_MODELS,
    JobKind,
    JobSpecAdapter,
    LapCompareSpec,
    PoseParams,
    PoseSpec,
    VlmParams,
    WebhookTarget,
    parse_job_spec,
)
from tests.contracts.examples import SPEC_BODIES


def _errors(body: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        parse_job_spec(body)
    return [dict(e) for e in info.value.errors()]


def _body(kind: str, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SPEC_BODIES[kind])
    body.update(changes)
    return body


@pytest.mark.parametrize("kind", list(JobKind))
def test_valid_spec_per_kind(kind: JobKind) -> None:
    spec = parse_job_spec(SPEC_BODIES[kind.value])
    assert type(spec) is SPEC_MODELS[kind]
    assert spec.job_kind is kind
    assert spec.is_session == (kind in SESSION_KINDS)
    dumped = JobSpecAdapter.dump_json(spec)
    assert JobSpecAdapter.validate_json(dumped) == spec


def test_kind_sets_partition_the_kinds() -> None:
    assert set(JobKind) == SESSION_KINDS | BATCH_KINDS
    assert not SESSION_KINDS & BATCH_KINDS
    assert {JobKind.SPLAT, JobKind.VLM} == SESSION_KINDS


def test_defaults_fill_params() -> None:
    spec = parse_job_spec({"kind": "pose", "inputs": {"video": {"upload_id": "u1"}}})
    assert isinstance(spec, PoseSpec)
    assert spec.params == PoseParams()
    assert spec.params.model is None  # the deployment's default weights, chosen by the worker
    assert PoseParams.model_validate_json(spec.params.model_dump_json()).model is None  # stays unnamed
    assert spec.params.batch_size == 8
    assert spec.webhook is None


def test_upload_ids() -> None:
    lap = parse_job_spec(SPEC_BODIES["lap_compare"])
    assert lap.upload_ids() == ["upl_1"]  # the reference is a url
    both = _body("lap_compare", inputs={"video": {"upload_id": "a"}, "reference": {"upload_id": "b"}})
    assert parse_job_spec(both).upload_ids() == ["a", "b"]
    assert parse_job_spec(SPEC_BODIES["splat"]).upload_ids() == []


@pytest.mark.parametrize("kind", [{"kind": "nope"}, {"kind": None}, {}, {"kind": "POSE"}])
def test_discriminator_errors(kind: dict[str, Any]) -> None:
    body = {"inputs": {"video": {"upload_id": "u1"}}, **kind}
    errors = _errors(body)
    assert errors[0]["type"] in {"union_tag_invalid", "union_tag_not_found"}


def test_params_of_another_kind_are_rejected() -> None:
    errors = _errors(_body("pose", params={"flow_method": "dis"}))
    assert errors[0]["loc"] == ("pose", "params", "flow_method")
    assert errors[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("pose", {"batch_size": 0}),
        ("pose", {"batch_size": 65}),
        ("pose", {"conf": 1.5}),
        ("pose", {"imgsz": 650}),
        ("pose", {"imgsz": 32}),
        ("pose", {"imgsz": 1952}),
        ("pose", {"model": "../../etc/passwd.pt"}),
        ("pose", {"model": "/abs/model.pt"}),
        ("pose", {"model": "weights/my model.pt"}),
        ("pose", {"model": "model.pt; rm -rf /"}),
        ("pose", {"model": "model.pkl"}),
        ("pose", {"model": "C:\\model.pt"}),
        ("lap_compare", {"downscale_width": 63}),
        ("lap_compare", {"downscale_width": 1921}),
        ("lap_compare", {"flow_method": "raft"}),
        ("lap_compare", {"max_duration_s": 0}),
        ("nerf", {"frames": 0}),
        ("nerf", {"frames": 7201}),
        ("nerf", {"iterations": 0}),
        ("nerf", {"background": [0, 0, 256]}),
        ("nerf", {"sfm_max_side": 100}),
        ("splat", {"chunk_every": 0}),
        ("splat", {"urdf": "../arm.urdf"}),
        ("splat", {"intrinsics": {"fx": 500.0}}),
        ("splat", {"intrinsics": {"fx": 500.0, "fy": 500.0, "hfov_deg": 60.0}}),
        ("splat", {"idle_timeout_s": 0}),
        ("vlm", {"prompt": ""}),
        ("vlm", {"prompt": "x" * 4001}),
        ("vlm", {"max_new_tokens": 0}),
        ("vlm", {"model": "../gemma"}),
        ("vlm", {"model": "/models/gemma"}),
        ("vlm", {"model": ""}),
        ("vlm", {"chunk_frames": 0}),
        ("vlm", {"chunk_frames": 65}),
        ("vlm", {"chunk_seconds": 0}),
        ("vlm", {"max_images_per_chunk": 17}),
        ("vlm", {"context_tokens": -1}),
        ("vlm", {"idle_timeout_s": 0}),
        ("vlm", {"temperature": 2.5}),
        ("vlm", {"system_prompt": "x" * 4001}),
        ("vlm", {"alert": {"pattern": ""}}),
        ("vlm", {"alert": {"pattern": "(unclosed"}}),
        ("vlm", {"alert": {"pattern": "a" * 257}}),
        ("vlm", {"alert": {"pattern": "a", "message": "m" * 501}}),
        ("vlm", {"alert": {"pattern": "a", "severity": "high"}}),
        ("vlm", {"chunk_size": 8}),
    ],
)
def test_param_bounds(kind: str, params: dict[str, Any]) -> None:
    errors = _errors(_body(kind, params=params))
    assert errors[0]["loc"][:2] == (kind, "params")


def test_vlm_params_defaults_and_alert() -> None:
    params = VlmParams()
    assert (params.model, params.chunk_frames, params.idle_timeout_s, params.alert) == (None, 8, 300.0, None)
    alert = VlmParams.model_validate({"model": "google/gemma-3-4b-it", "alert": {"pattern": "(?i)fell"}}).alert
    assert alert is not None
    assert (alert.pattern, alert.message) == ("(?i)fell", None)


@pytest.mark.parametrize("model", ["yolo26n-pose.pt", "models/custom_v2.pt", "x.onnx", "a/b/c.engine"])
def test_pose_model_paths_accepted(model: str) -> None:
    assert PoseParams(model=model).model == model


@pytest.mark.parametrize(
    "ref",
    [
        {"url": "http://example.com/a.mp4"},
        {"url": "ftp://example.com/a.mp4"},
        {"url": "not a url"},
        {"upload_id": "u1", "url": "https://example.com/a.mp4"},
        {},
        {"upload_id": "a.b"},
        {"upload_id": "u1", "bucket": "x"},
    ],
)
def test_input_ref_is_exactly_one_https_or_upload(ref: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        InputRef.model_validate(ref)
    errors = _errors(_body("pose", inputs={"video": ref}))
    assert errors[0]["loc"][:3] == ("pose", "inputs", "video")


def test_input_ref_serialises_without_nulls() -> None:
    assert InputRef(upload_id="u1").model_dump(mode="json") == {"upload_id": "u1"}
    assert InputRef.model_validate({"url": "https://x.io/a"}).model_dump(mode="json") == {"url": "https://x.io/a"}


@pytest.mark.parametrize(
    ("kind", "inputs", "message"),
    [
        ("pose", {"vidoe": {"upload_id": "u1"}}, "unknown input 'vidoe' for kind pose; expected: video"),
        ("pose", {}, "missing required input 'video' for kind pose"),
        ("nerf", {"video": {"upload_id": "u1"}}, "unknown input 'video' for kind nerf; expected: images"),
        ("lap_compare", {"reference": {"upload_id": "u1"}}, "missing required input 'video'"),
        ("splat", {"video": {"upload_id": "u1"}}, "unknown input 'video' for kind splat"),
        ("vlm", {"frames": {"upload_id": "u1"}}, "unknown input 'frames' for kind vlm"),
    ],
)
def test_input_names_checked_with_clear_messages(kind: str, inputs: dict[str, Any], message: str) -> None:
    errors = _errors(_body(kind, inputs=inputs))
    assert errors[0]["loc"] == (kind, "inputs")
    assert message in errors[0]["msg"]


def test_unknown_top_level_field_rejected() -> None:
    errors = _errors(_body("pose", urgency=5))
    assert errors[0]["type"] == "extra_forbidden"


def test_priority_is_0_to_9_default_5() -> None:
    assert parse_job_spec(_body("pose")).priority == 5
    assert parse_job_spec(_body("pose", priority=9)).priority == 9
    assert _errors(_body("pose", priority=10))[0]["loc"] == ("pose", "priority")


def test_webhook_target() -> None:
    spec = parse_job_spec(SPEC_BODIES["lap_compare"])
    assert isinstance(spec, LapCompareSpec)
    assert spec.webhook is not None
    assert spec.webhook.matches("job.succeeded")
    assert not spec.webhook.matches("job.progress")
    default = WebhookTarget.model_validate({"url": "http://localhost:8080/hook"})
    assert default.matches("job.progress")
    assert not default.matches("upload.completed")
    bad_targets = [
        {"url": "ftp://x.io"},
        {"url": "https://x.io", "events": []},
        {"url": "https://x.io", "events": ["a b"]},
    ]
    for bad in bad_targets:
        with pytest.raises(ValidationError):
            WebhookTarget.model_validate(bad)


def test_specs_are_immutable() -> None:
    spec = parse_job_spec(SPEC_BODIES["pose"])
    with pytest.raises(ValidationError):
        spec.kind = "nerf"
