"""modal_workers/app.py at import level: no heavy imports, pinned images, the storage secret, hooks."""

from __future__ import annotations

import subprocess
import sys
import warnings
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
    assert done.stdout.split() == ["none", "7"]


def test_images_pin_the_versions_the_project_is_tested_with() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from modal_workers import app as modal_app
    pins = [*modal_app.BASE_PACKAGES, *modal_app.VIDEO_PACKAGES, *modal_app.TORCH_PACKAGES]
    for pin in pins:
        name, _, pinned = pin.partition("==")
        assert pinned, f"{pin} is not pinned"
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = pinned  # not installed here (e.g. the ml extra): nothing to compare
        assert installed == pinned, f"{name}: image pins {pinned}, the venv has {installed}"


def test_functions_use_the_storage_secret_and_sessions_warm_up_once_per_container() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from modal_workers import app as modal_app
    assert modal_app.storage_secret.name == "gpurelay-storage"
    for name in ("lap_compare", "pose", "nerf_train"):
        secrets = getattr(modal_app, name)._spec_.secrets
        assert [repr(s) for s in secrets] == ["modal.Secret.from_name('gpurelay-storage')"]
    assert modal_app.OPTIONS["lap_compare"] == {"gpu": ["T4", "A10G"], "timeout": 900}
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
