"""The new-job form, generated from what ``GET /v1/kinds`` says of a kind (:class:`~contracts.api.kinds.KindOut`):
one control per parameter of its JSON Schema, with its default, a file input per named input.

Scalars (string, integer, number, boolean, enum; each possibly nullable) get inputs of their type
with the schema's bounds; anything else (objects, arrays) a JSON text area. The browser sends what
is filled in to ``POST /v1/jobs`` and shows the API's problem+json messages next to the fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from contracts.api.kinds import KindOut

ZIP = "application/zip"
UNITS = {"s": "s", "ms": "ms", "deg": "°"}
"""A parameter's name ending in a unit (``max_duration_s``): its label says it in brackets."""
WORDS = {
    "fps": "FPS", "iou": "IoU", "sh": "SH", "sfm": "SfM", "urdf": "URDF", "rpy": "RPY", "xyz": "XYZ",
    "hfov": "horizontal FOV", "imgsz": "image size", "vid": "video", "conf": "confidence",
}  # fmt: skip
"""Words of parameter names a label spells out."""


def label_of(name: str, title: str | None = None) -> str:
    """A parameter's label: its schema's own title, else its name as words (``max_duration_s`` → ``Max
    duration (s)``, not pydantic's ``Max Duration S``)."""
    if title and title != name.replace("_", " ").title():
        return title
    words = name.split("_")
    unit = UNITS.get(words[-1]) if len(words) > 1 else None
    words = [WORDS.get(word, word) for word in (words[:-1] if unit else words)]
    text = " ".join(words)
    text = text[:1].upper() + text[1:]
    return f"{text} ({unit})" if unit else text


@dataclass(frozen=True)
class ParamField:
    """One parameter's control."""

    name: str
    label: str
    control: str
    """``text``, ``integer``, ``number``, ``checkbox``, ``select`` or ``json``."""
    default: Any = None
    description: str = ""
    nullable: bool = False
    options: list[str] = field(default_factory=list)
    bounds: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> str:
        """The default as the control shows it."""
        if self.default is None:
            return ""
        if self.control == "json":
            return json.dumps(self.default)
        return str(self.default)


@dataclass(frozen=True)
class InputField:
    """A file input of the kind (an upload)."""

    name: str
    required: bool
    accept: str


def job_kinds(catalog: list[KindOut]) -> list[str]:
    """The routed kinds submitted as jobs (sessions start on the sessions page)."""
    return [str(k.kind) for k in catalog if not k.session]


def price_text(kind: KindOut) -> str:
    """Where ``kind`` runs and what it costs, for the form."""
    where = ", ".join(kind.gpus) if kind.gpus else "CPU"
    return f"Runs on {where}; ${kind.price_per_gpu_second * 3600:.2f} per GPU-hour."


def _scalar(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The non-null branch of a nullable ``anyOf`` and whether null is allowed."""
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        others = [b for b in branches if b.get("type") != "null"]
        if len(others) == 1:
            return {**schema, **others[0]}, len(others) < len(branches)
    return schema, False


def _control(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "select"
    return {"string": "text", "integer": "integer", "number": "number", "boolean": "checkbox"}.get(
        str(schema.get("type")), "json"
    )


def _bounds(schema: dict[str, Any], control: str) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for key, attr in (("minimum", "min"), ("maximum", "max"), ("exclusiveMinimum", "min"), ("maxLength", "maxlength")):
        if key in schema:
            bounds[attr] = schema[key]
    if control == "integer":
        bounds["step"] = schema.get("multipleOf", 1)
    elif control == "number":
        bounds["step"] = "any"
    return bounds


def param_fields(kind: KindOut) -> list[ParamField]:
    """The controls of the kind's params, in the schema's order."""
    fields = []
    for name, raw in kind.params_schema.get("properties", {}).items():
        prop, nullable = _scalar(raw)
        control = _control(prop)
        fields.append(
            ParamField(
                name=name,
                label=label_of(name, raw.get("title")),
                control=control,
                default=raw.get("default"),
                description=str(raw.get("description") or ""),
                nullable=nullable,
                options=[str(v) for v in prop.get("enum", [])],
                bounds=_bounds(prop, control),
            )
        )
    return fields


def input_fields(kind: KindOut) -> list[InputField]:
    """The file inputs of the kind (required ones first, as the catalog orders them)."""
    return [
        InputField(i.name, i.required, ",".join(i.accepts) + (",.zip" if ZIP in i.accepts else "")) for i in kind.inputs
    ]
