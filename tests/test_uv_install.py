"""``tools/uv_install.py`` hands uv the package sources pip is configured with (uv reads no pip.conf)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools.uv_install import uv_options

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_setting_becomes_its_uv_option_from_where_pip_takes_it() -> None:
    listing = "\n".join([
        "global.cert='/etc/ssl/certs/ca-certificates.crt'",
        "global.constraint='/etc/xdg/pip/constraints.txt'",
        "global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'",
        "global.find-links='/opt/files'",
        ":env:.find-links='/opt/wheels'",
        ":env:.default-timeout='180'",
        "global.index-url='https://mirror.example/simple'",
        "install.index-url='https://install.example/simple'",
        "freeze.find-links='/opt/freeze'",  # another command's section
    ])  # fmt: skip
    options = uv_options(listing)
    pairs = list(zip(options[::2], options[1::2], strict=True))
    assert sorted(pairs) == sorted([
        ("--cert", "/etc/ssl/certs/ca-certificates.crt"),
        ("--constraint", "/etc/xdg/pip/constraints.txt"),
        ("--extra-index-url", "file:///opt/a/simple"),
        ("--extra-index-url", "file:///opt/b/simple"),
        ("--find-links", "/opt/wheels"),  # PIP_FIND_LINKS replaces the files' value, as for pip
        ("--index-url", "https://install.example/simple"),  # [install] over [global]
    ])  # fmt: skip
    assert options.index("file:///opt/a/simple") < options.index("file:///opt/b/simple")


def test_no_pip_configuration_adds_nothing() -> None:
    assert uv_options("") == []
    assert uv_options(":env:.disable-pip-version-check='1'\nglobal.timeout='60'") == []


def test_the_venvs_uv_installs_what_is_installed_already_as_nothing_new() -> None:
    """The script runs the venv's uv, which finds the project's constraints already met (offline: no index read)."""
    command = [sys.executable, str(ROOT / "tools" / "uv_install.py"), "--offline", "--dry-run"]
    done = subprocess.run(
        [*command, "-c", "constraints.txt", "httpx"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Would make no changes" in done.stderr, done.stderr
