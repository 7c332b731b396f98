"""The generated models pass the project's lint: no line longer than ruff's limit, a long
discriminated union wrapped as ``ruff format`` wraps it (the job spec's union of every kind is one)."""

from __future__ import annotations

import json
from typing import Any

from tests.clients.python.test_contract import ROOT, generator


def test_no_generated_line_exceeds_the_line_length() -> None:
    openapi = json.loads((ROOT / "docs" / "openapi.json").read_text())
    asyncapi = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    module = generator()
    lines = module.generate(openapi, asyncapi).splitlines()
    assert [line for line in lines if len(line) > module.LINE_LENGTH] == []
    assert "    spec: Annotated[" in lines


def test_a_short_union_stays_on_one_line_and_a_long_one_wraps() -> None:
    def union(*names: str) -> dict[str, object]:
        refs = [{"$ref": f"#/components/schemas/{name}"} for name in names]
        return {"oneOf": refs, "discriminator": {"propertyName": "kind"}}

    renderer = generator().Renderer({})
    assert renderer.field("spec", union("A", "B"), True) == '    spec: Annotated[A | B, Field(discriminator="kind")]'
    long_names = [f"Spec{n}WithALongName" for n in range(6)]
    wrapped = renderer.field("spec", union(*long_names), True)
    inner = " | ".join(long_names) + ', Field(discriminator="kind")'
    assert wrapped == f"    spec: Annotated[\n        {inner}\n    ]"


def test_every_list_and_page_answer_iterates_counts_and_indexes_its_rows() -> None:
    """``for kind in client.kinds.list()``: a pydantic model would yield ``(field, value)`` pairs."""
    from gpurelay_client import _models

    rows_of: dict[Any, str] = {
        _models.KindList: "items",
        _models.RobotList: "items",
        _models.SessionList: "items",
        _models.JobList: "items",
        _models.JointHistory: "items",
        _models.WebhookList: "data",
        _models.DeliveryList: "data",
        _models.DeadLetterPage: "data",
    }
    listed = {
        model
        for model in vars(_models).values()
        if isinstance(model, type) and issubclass(model, _models.ApiModel) and "__iter__" in vars(model)
    }
    assert listed == set(rows_of)  # every answer with rows, and nothing else
    for model, field in rows_of.items():
        rows = [object(), object()]
        answer = model.model_construct(**{field: rows, "next_cursor": "c"})
        assert (list(answer), len(answer), answer[1]) == (rows, 2, rows[1])
        assert getattr(answer, field) is rows  # still a model, its fields as they were
        assert repr(answer).startswith(model.__name__)
        assert not model.model_construct(**{field: []})  # empty is falsy, as a list
