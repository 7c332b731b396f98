"""The client's models are the API's contracts, and its two clients have one surface.

``_models.py`` is generated from docs/openapi.json and docs/asyncapi.json (which the server's own
drift tests keep current): regenerating must give the committed file. Every public verb of the
blocking client exists on the asyncio client with the same parameters, and the reverse.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

import gpurelay_client
from gpurelay_client import AsyncClient, AsyncSession, Client, Session
from gpurelay_client._async_publisher import AsyncJointPublisher
from gpurelay_client._sync_publisher import JointPublisher

ROOT = Path(__file__).resolve().parents[3]
CLIENT = ROOT / "clients" / "python"


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_models", CLIENT / "scripts" / "generate_models.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_models_are_what_the_api_documents_generate() -> None:
    openapi = json.loads((ROOT / "docs" / "openapi.json").read_text())
    asyncapi = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    committed = (CLIENT / "gpurelay_client" / "_models.py").read_text()
    assert generator().generate(openapi, asyncapi) == committed, "run clients/python/scripts/generate_models.py"


def test_a_changed_schema_changes_the_models() -> None:
    """The check above can fail: a field added to JobOut in the document is a new field in the module."""
    openapi = json.loads((ROOT / "docs" / "openapi.json").read_text())
    asyncapi = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    openapi["components"]["schemas"]["JobOut"]["properties"]["owner"] = {"type": "string"}
    assert "    owner: str | None = None\n" in generator().generate(openapi, asyncapi)


def test_every_response_schema_has_a_model() -> None:
    openapi = json.loads((ROOT / "docs" / "openapi.json").read_text())
    taken = generator().response_schemas(openapi)
    names = {name.removesuffix("-Output").replace("-Input", "Input") for name in taken}
    assert {"JobOut", "JobList", "UploadOut", "PresignedUpload", "SessionOut", "Problem"} <= names
    assert all(hasattr(gpurelay_client._models, name) for name in names)


def surface(cls: type) -> dict[str, list[tuple[str, Any, Any]]]:
    """Public methods of ``cls`` and their parameters (name, kind, default)."""
    return {
        name: [(p.name, p.kind, p.default) for p in inspect.signature(member).parameters.values()]
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_the_blocking_and_asyncio_clients_have_one_surface() -> None:
    sync, aio = Client("http://127.0.0.1:9", api_key="k"), AsyncClient("http://127.0.0.1:9", api_key="k")
    resources = ["uploads", "jobs", "sessions", "robots", "tokens", "webhooks", "kinds", "usage"]
    for name in resources:
        assert surface(type(getattr(sync, name))) == surface(type(getattr(aio, name))), name
    assert surface(Session) == {k: v for k, v in surface(AsyncSession).items() if k != "open"}
    assert surface(JointPublisher) == surface(AsyncJointPublisher)
    assert set(surface(Client)) == set(surface(AsyncClient)) == {"close", "request"}
    assert surface(Client)["request"] == surface(AsyncClient)["request"]
    assert inspect.signature(Client).parameters.keys() == inspect.signature(AsyncClient).parameters.keys()
    sync.close()
