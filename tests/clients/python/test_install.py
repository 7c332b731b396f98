"""``pip install ./clients/python`` into a fresh virtual environment: the client imports there, and none
of the server's dependencies (FastAPI, nats-py, torch, OpenCV, numpy) came with it."""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHECK = """
import importlib, json
found = {}
for name in ("fastapi", "nats", "torch", "cv2", "numpy", "starlette", "uvicorn"):
    try:
        importlib.import_module(name)
        found[name] = True
    except ImportError:
        found[name] = False
import gpurelay_client
from gpurelay_client import AsyncClient, Client, verify_webhook
Client("http://127.0.0.1:9", api_key="k").close()
print(json.dumps({"server": found, "version": gpurelay_client.__version__}))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_client_installs_alone_into_a_fresh_venv(tmp_path: Path) -> None:
    source = shutil.copytree(ROOT / "clients" / "python", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    checked = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stderr[-2000:]
    report = json.loads(checked.stdout)
    assert report["version"] == "0.1.0"
    server = ("fastapi", "nats", "torch", "cv2", "numpy", "starlette", "uvicorn")
    assert report["server"] == dict.fromkeys(server, False)
