"""No contract takes NaN or ±Infinity anywhere: every float, at any depth, and every free-form JSON value.

The models are found, not listed: every pydantic model defined in a module of ``contracts``. Each
model's validation schema is walked to every ``float`` it holds (through nested models, lists,
tuples, dicts, optionals, unions and tagged unions) and every ``Any`` (a free-form JSON value,
and the extra fields of a model that keeps unknown ones). For each, an input that reaches it is
built with NaN, +Inf or -Inf there (nested inside a JSON value for an ``Any``), validated both as
Python data and as JSON text (``NaN`` / ``Infinity`` literals), and must be refused with a
``finite_number`` error.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

import contracts

NON_FINITE = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf}
ANY = {"type": "any"}
Build = Callable[[Any], Any]


@dataclass(frozen=True)
class Target:
    """A float or a JSON value inside a model: where (``path``), what, and how to reach it (``build``)."""

    path: str
    kind: str
    build: Build


def contract_models() -> list[type[BaseModel]]:
    """Every pydantic model defined in a module of the ``contracts`` package."""
    modules = [importlib.import_module(m.name) for m in pkgutil.walk_packages(contracts.__path__, "contracts.")]
    found = {
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseModel) and cls.__module__ == module.__name__
    }
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def _key(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A valid dict key for ``schema`` (a literal's first value, an enum's first member, else a word)."""
    schema = _resolved(schema, defs)
    if schema["type"] == "literal":
        return schema["expected"][0]
    if schema["type"] == "enum":
        return schema["members"][0].value
    if "schema" in schema and schema["type"].startswith("function"):
        return _key(schema["schema"], defs)
    return 0 if schema["type"] == "int" else "k"


def _resolved(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if schema["type"] == "definitions":
        defs.update({d["ref"]: d for d in schema["definitions"]})
        return _resolved(schema["schema"], defs)
    if schema["type"] == "definition-ref":
        return defs[schema["schema_ref"]]
    return schema


def _children(schema: dict[str, Any], defs: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, Build]]:
    """What a value of ``schema`` holds: each part's schema, the path step to it, and how a value of the
    part sits in a value of ``schema``."""
    kind, same = schema["type"], lambda value: value
    if kind == "model":
        extra = schema.get("config", {}).get("extra_fields_behavior") == "allow"
        yield ({**schema["schema"], "extra_behavior": "allow"} if extra else schema["schema"]), "", same
    elif kind in ("default", "nullable") or (kind.startswith("function") and "schema" in schema):
        yield schema["schema"], "", same
    elif kind == "model-fields":
        for name, field in schema["fields"].items():
            yield field["schema"], f".{name}", lambda value, n=name: {n: value}
        if schema.get("extra_behavior") == "allow" or "extras_schema" in schema:
            yield schema.get("extras_schema", ANY), ".<extra>", lambda value: {"an_extra_field": value}
    elif kind in ("list", "set", "frozenset"):
        yield schema.get("items_schema", ANY), "[]", lambda value: [value]
    elif kind == "tuple":
        count = len(schema["items_schema"])
        for i, item in enumerate(schema["items_schema"]):
            yield item, f"[{i}]", lambda value, i=i: [value if j == i else None for j in range(count)]
    elif kind == "dict":
        key = _key(schema.get("keys_schema", {"type": "str"}), defs)
        yield schema.get("values_schema", ANY), "{}", lambda value, k=key: {k: value}
    elif kind == "union":
        for choice in schema["choices"]:
            yield (choice[0] if isinstance(choice, tuple) else choice), "", same
    elif kind == "tagged-union":
        on = schema["discriminator"]
        for tag, choice in schema["choices"].items():
            yield choice, f"<{tag}>", (lambda value, t=tag: {**value, on: t}) if isinstance(on, str) else same


def targets(
    schema: dict[str, Any], defs: dict[str, Any], path: str, seen: frozenset[str] = frozenset()
) -> Iterator[Target]:
    """Every float and JSON value under ``schema``, each with the input that puts a value there."""
    ref = schema.get("schema_ref") or schema.get("ref")
    if ref in seen:
        return
    seen = seen | {ref} if ref else seen
    schema = _resolved(schema, defs)
    if schema["type"] == "float":
        yield Target(path, "float", lambda value: value)
    elif schema["type"] == "any":
        yield Target(path, "json", lambda value: {"deep": [1, {"x": value}]})
    for child, step, wrap in _children(schema, defs):
        for t in targets(child, defs, path + step, seen):
            yield Target(t.path, t.kind, lambda value, b=t.build, w=wrap: w(b(value)))


def model_targets(model: type[BaseModel]) -> list[Target]:
    """The floats and JSON values of ``model`` (``path`` starts with its name)."""
    return list(targets(model.__pydantic_core_schema__, {}, model.__name__))


def accepted(model: type[BaseModel], data: Any) -> list[str]:
    """How ``data`` got past ``model``: ``python`` and ``json`` if validation took it or refused it for
    something other than a non-finite number."""
    ways = []
    for way, text in (("python", None), ("json", json.dumps(data))):
        try:
            model.model_validate(data) if text is None else model.model_validate_json(text)
        except ValidationError as exc:
            if any(error["type"] == "finite_number" for error in exc.errors()):
                continue
        ways.append(way)
    return ways


def non_finite_holes(models: list[type[BaseModel]]) -> list[str]:
    """Every (model, place, value, mode) where a non-finite number is not refused as such."""
    holes = []
    for model in models:
        for target in model_targets(model):
            for name, value in NON_FINITE.items():
                ways = accepted(model, target.build(value))
                holes += [f"{target.path} ({target.kind}) takes {name} as {way}" for way in ways]
    return holes


def test_every_contract_model_is_found() -> None:
    names = {model.__name__ for model in contract_models()}
    assert {"JobRecord", "EventEnvelope", "SplatParams", "CameraMount", "JointSample", "TenantQuota"} <= names
    assert {"WebhookRecord", "FeedFrame", "RunRequest", "Outcome", "JobBatchItem"} <= names
    assert len(names) > 100


def test_the_walk_reaches_floats_and_json_at_any_depth() -> None:
    paths = {t.path for model in contract_models() for t in model_targets(model)}
    assert "JobRecord.spec<splat>.params.camera_mount.xyz[2]" in paths
    assert "JobRecord.result{}" in paths
    assert "EventEnvelope.data{}" in paths
    assert "WebhookRecord.<extra>" in paths
    assert "JointBatch.samples[].joint_angles[]" in paths


@pytest.mark.parametrize("model", contract_models(), ids=lambda model: model.__name__)
def test_no_float_or_json_value_takes_nan_or_infinity(model: type[BaseModel]) -> None:
    assert non_finite_holes([model]) == []


def test_the_check_sees_a_float_that_takes_nan_anywhere() -> None:
    class Inner(BaseModel):
        ratio: float | None = None

    class Loose(BaseModel):
        model_config = ConfigDict(allow_inf_nan=False)

        inner: list[Inner] = []
        data: dict[str, Any] = {}
        fine: float = 0.0

    holes = non_finite_holes([Loose])
    assert {hole.split(" (")[0] for hole in holes} == {"Loose.inner[].ratio", "Loose.data{}"}
    assert len(holes) == 2 * 3 * 2  # two places, three values, Python and JSON
