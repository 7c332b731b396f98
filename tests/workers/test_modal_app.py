"""modal_workers/app.py at import level: no heavy imports, pinned images, the storage secret, hooks."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_app_imports_without_torch_or_opencv() -> None:
    code = (
        "import sys, warnings; warnings.simplefilter('ignore'); import modal_workers.app as m; "
        "heavy = [x for x in ('torch', 'cv2', 'ultralytics', 'numpy') if x in sys.modules]; "
        "print(','.join(heavy) or 'none', len(m.OPTIONS))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["none", "9"]  # nerf: check, colmap, train and render; session_export


PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?==(?P<version>[0-9][A-Za-z0-9.+!_-]*)$")


def installed_version(name: str) -> str | None:
    """The version of ``name`` in this venv, ``None`` when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def pin_problems(pins: list[str], installed: Callable[[str], str | None] = installed_version) -> list[str]:
    """What is wrong with an image's pip packages: each must be ``name==version`` as installed here.

    ``make`` installs every image package into the venv (the ``ml`` extra included), so a package
    missing here is a misspelt or dropped name, not one to skip.
    """
    problems = []
    for pin in pins:
        if (match := PIN.fullmatch(pin)) is None:
            problems.append(f"{pin!r} is not pinned with ==")
        elif (have := installed(match["name"])) is None:
            problems.append(f"{match['name']} is pinned to {match['version']} but not installed in the venv")
        elif have != match["version"]:
            problems.append(f"{match['name']}: the image pins {match['version']}, the venv has {have}")
    return problems


def image_pins(source: str, names: dict[str, object]) -> tuple[list[str], list[str]]:
    """Every package passed to ``pip_install`` in ``source`` (literals, or ``*NAME`` of a tuple in ``names``).

    Returns the packages and the arguments that could not be read (each one a problem).
    """
    pins: list[str] = []
    unreadable: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "pip_install":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    pins.append(arg.value)
                elif (
                    isinstance(arg, ast.Starred)
                    and isinstance(arg.value, ast.Name)
                    and isinstance(value := names.get(arg.value.id), tuple)
                ):
                    pins.extend(str(v) for v in value)
                else:
                    unreadable.append(ast.unparse(arg))
    return pins, unreadable


def test_images_pin_the_versions_the_project_is_tested_with() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from modal_workers import app as modal_app
    pins, unreadable = image_pins((ROOT / "modal_workers" / "app.py").read_text(), vars(modal_app))
    assert unreadable == []
    images = (modal_app.BASE_PACKAGES, modal_app.VIDEO_PACKAGES, modal_app.TORCH_PACKAGES, modal_app.SPLAT_PACKAGES)
    assert set(pins) >= {*(pin for image in images for pin in image), *modal_app.GSPLAT_PACKAGES}
    names = {PIN.sub(r"\g<name>", p) for p in pins}
    assert {"torch", "ultralytics", "opencv-python-headless", "pydantic", "gsplat", "plyfile"} <= names
    assert pin_problems(pins) == []


def test_the_pin_check_fails_on_unpinned_missing_and_drifted_packages() -> None:
    problems = pin_problems(
        ["torch", "numpy>=1.26", "surely-not-installed-pkg==1.0", "pydantic==0.0.1", "rich==15.0.0"],
        installed=lambda name: {"torch": "2.14.1", "numpy": "2.4.6", "pydantic": "2.14.3", "rich": "15.0.0"}.get(name),
    )
    assert problems == [
        "'torch' is not pinned with ==",
        "'numpy>=1.26' is not pinned with ==",
        "surely-not-installed-pkg is pinned to 1.0 but not installed in the venv",
        "pydantic: the image pins 0.0.1, the venv has 2.14.3",
    ]
    assert pin_problems(["surely-not-installed-pkg==1.0"]) != []  # the real lookup too
    source = 'img = base.pip_install("requests").pip_install(*EXTRA, *PINNED, get_more())'
    pins, unreadable = image_pins(source, {"PINNED": ("rich==15.0.0",), "EXTRA": "not a tuple"})
    assert sorted(pins) == ["requests", "rich==15.0.0"]
    assert sorted(unreadable) == ["*EXTRA", "get_more()"]


def test_functions_use_the_storage_secret_and_sessions_warm_up_once_per_container() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from modal_workers import app as modal_app
    assert modal_app.storage_secret.name == "gpurelay-storage"
    for name in ("lap_compare", "pose", "nerf_train"):
        secrets = getattr(modal_app, name)._spec_.secrets
        assert [repr(s) for s in secrets] == ["modal.Secret.from_name('gpurelay-storage')"]
    assert modal_app.OPTIONS["lap_compare"] == {"gpu": ["T4", "A10G"], "timeout": 900}
    assert modal_app.OPTIONS["nerf_check"] == {"gpu": None, "timeout": 600}  # the archive check: no GPU
    for cls in (modal_app.SplatSession, modal_app.VlmSession):
        user_cls: type = getattr(cls, "_get_user_cls")()  # noqa: B009 - Modal's private accessor
        assert "load" in user_cls.__dict__
        assert "run" in user_cls.__dict__


def test_warm_calls_the_workload_modules_hook_and_tolerates_a_missing_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from modal_workers import app as modal_app
    calls: list[str] = []
    monkeypatch.setattr("tests.workers.test_modal_app.warm", lambda: calls.append("warm"), raising=False)
    modal_app.warm("tests.workers.test_modal_app:run")
    modal_app.warm("modal_workers.does_not_exist:run")
    assert calls == ["warm"]


RUNTIME_MODULES = (
    "modal_workers.runtime.worker_runtime",
    "modal_workers.runtime.session_feeds",
    "modal_workers.runtime.live_session",
    "modal_workers.vlm.workload",
)


def _name(requirement: str) -> str:
    """A distribution's normalised name from a requirement or pin (``Foo_bar[x]>=1`` → ``foo-bar``)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def installed_closure(pins: tuple[str, ...]) -> set[str]:
    """The pinned distributions and everything they require, transitively (as installed here)."""
    from importlib.metadata import requires

    seen: set[str] = set()
    todo = [_name(pin) for pin in pins]
    while todo:
        if (name := todo.pop()) in seen:
            continue
        seen.add(name)
        try:
            todo += [_name(r) for r in requires(name) or []]
        except PackageNotFoundError:
            continue
    return seen


def test_the_base_image_holds_every_distribution_the_runtime_imports() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from modal_workers import app as modal_app
    code = (
        "import importlib, json, sys\n"
        f"for m in {RUNTIME_MODULES!r}: importlib.import_module(m)\n"
        "from importlib.metadata import packages_distributions as pd\n"
        "top = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)\n"
        "dists = pd()\n"
        "print(json.dumps(sorted({d for t in top for d in dists.get(t, [])})))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    imported = {_name(d) for d in json.loads(done.stdout)} - {"gpurelay"}  # the project's own code is added
    assert "nats-py" in imported  # the check sees the runtime's third-party imports
    assert imported - installed_closure(modal_app.BASE_PACKAGES) == set()


def test_the_vlm_image_pins_transformers_and_bakes_the_deployments_hub_models() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from modal_workers import app as modal_app
    assert {"transformers==5.23.0", "torch==2.14.1", "pillow==13.0.0", "regex==2026.11.19"} <= set(
        modal_app.VLM_PACKAGES
    )
    assert modal_app.vlm_hub_models({}) == ("google/gemma-3-4b-it",)
    env = {"GPURELAY_VLM_MODEL": "/srv/models/x", "GPURELAY_VLM_MODELS": '["org/a", "../b", "org/a", "org/c"]'}
    assert modal_app.vlm_hub_models(env) == ("org/a", "org/c")  # no directory, no path, no repeat
    with pytest.raises(ValueError, match="GPURELAY_VLM_MODELS"):
        modal_app.vlm_hub_models({"GPURELAY_VLM_MODELS": '{"a": 1}'})
    assert modal_app.HF_SECRET == "huggingface"
