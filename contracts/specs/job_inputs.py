"""A job's inputs (v1): ``inputs`` maps an input name to ``{"upload_id": ...}`` or ``{"url": "https://..."}``.

The names are fixed per kind (lap_compare: ``video`` and optional ``reference``; pose: ``video``; nerf:
``images``; the live session kinds splat and vlm take no inputs, their frames come live or from their
``source``; session_export takes none, its ``params.session_id`` names the recording): one
:class:`JobInputs` model per kind, each refusing a name it does not declare.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import (
    ConfigDict,
    HttpUrl,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts.base import Contract
from contracts.ids import ResourceId

INPUTS_CONFIG = ConfigDict(extra="forbid", frozen=True)
"""Every inputs model: no field it does not declare, never changed in place."""


class InputRef(Contract):
    """One job input: exactly one of ``{"upload_id": ...}`` or ``{"url": "https://..."}``."""

    model_config = INPUTS_CONFIG

    upload_id: ResourceId | None = None
    url: HttpUrl | None = None

    @field_validator("url")
    @classmethod
    def _https_only(cls, value: HttpUrl | None) -> HttpUrl | None:
        if value is not None and value.scheme != "https":
            raise ValueError("input urls must use https")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> InputRef:
        if (self.upload_id is None) == (self.url is None):
            raise ValueError("an input is exactly one of {'upload_id': ...} or {'url': 'https://...'}")
        return self

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


class JobInputs(Contract):
    """Base of the per-kind input maps: rejects unknown and missing names with a clear message."""

    model_config = INPUTS_CONFIG
    kind_name: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _check_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            expected = ", ".join(cls.model_fields) or "none (frames come live)"
            unknown = sorted(str(name) for name in data if name not in cls.model_fields)
            if unknown:
                raise PydanticCustomError(
                    "unknown_input",
                    "unknown input {names} for kind {kind}; expected: {expected}",
                    {"names": ", ".join(map(repr, unknown)), "kind": cls.kind_name, "expected": expected},
                )
            missing = [name for name, f in cls.model_fields.items() if f.is_required() and name not in data]
            if missing:
                raise PydanticCustomError(
                    "missing_input",
                    "missing required input {names} for kind {kind}",
                    {"names": ", ".join(map(repr, missing)), "kind": cls.kind_name},
                )
        return data

    def refs(self) -> dict[str, InputRef]:
        """The inputs that are set, by name."""
        return {name: value for name in type(self).model_fields if isinstance(value := getattr(self, name), InputRef)}


class LapCompareInputs(JobInputs):
    """``video``: the lap to analyse; ``reference``: an optional second lap to align against."""

    kind_name: ClassVar[str] = "lap_compare"
    video: InputRef
    reference: InputRef | None = None


class PoseInputs(JobInputs):
    """``video``: the match video."""

    kind_name: ClassVar[str] = "pose"
    video: InputRef


class NerfInputs(JobInputs):
    """``images``: a zip of photos of the object."""

    kind_name: ClassVar[str] = "nerf"
    images: InputRef


class SplatInputs(JobInputs):
    """None: a splat session's frames and joint angles arrive live."""

    kind_name: ClassVar[str] = "splat"


class VlmInputs(JobInputs):
    """None: a VLM session's frames arrive live."""

    kind_name: ClassVar[str] = "vlm"


class SessionExportInputs(JobInputs):
    """None: the recording is the session's (``params.session_id``)."""

    kind_name: ClassVar[str] = "session_export"
