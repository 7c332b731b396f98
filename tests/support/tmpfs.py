"""A real file system that fills up: a small tmpfs mounted for one test (root only).

Elsewhere the test skips saying why; CI, which has root, sets ``GPURELAY_REQUIRE_NETFAULTS=1``
(the root-only fault tests' switch), and there the skip is a failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.common.processes import preexec_die_with_parent

MOUNT_TIMEOUT_S = 10.0


def _cannot(reason: str) -> None:
    if os.environ.get("GPURELAY_REQUIRE_NETFAULTS") == "1":
        pytest.fail(f"GPURELAY_REQUIRE_NETFAULTS=1 but {reason}")
    pytest.skip(reason)


def require_mount() -> None:
    """Skip (or, where root-only tests are required, fail) unless this process runs as root."""
    if os.geteuid() != 0:
        _cannot("mounting a small tmpfs (a disk that fills up) needs root")


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=MOUNT_TIMEOUT_S)


@contextmanager
def small_tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` at ``path``, unmounted on the way out (lazily: a file a server still
    holds open does not keep it mounted)."""
    require_mount()
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "gpurelay-test", str(path))
    except subprocess.CalledProcessError as exc:  # root without the right to mount (a locked-down container)
        _cannot(f"mount refused a tmpfs: {exc.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False, capture_output=True, timeout=MOUNT_TIMEOUT_S)


def remount(path: Path, *, read_only: bool) -> None:
    """Make the tmpfs at ``path`` read-only (a disk the kernel turned read-only), or writable again."""
    _mount("-o", f"remount,{'ro' if read_only else 'rw'}", str(path))


@contextmanager
def unreadable_file(path: Path) -> Iterator[Path]:
    """``path`` (a file) made one whose every read fails with EIO, as a failing disk's would: the
    memory file of a sleeping child (``/proc/{pid}/mem``, unmapped at offset 0) bind-mounted over it.
    Unmounted and the child stopped on the way out."""
    require_mount()
    sleeper = subprocess.Popen(["sleep", "300"], preexec_fn=preexec_die_with_parent())
    try:
        try:
            _mount("--bind", f"/proc/{sleeper.pid}/mem", str(path))
        except subprocess.CalledProcessError as exc:  # root without the right to mount
            _cannot(f"mount refused a bind mount: {exc.stderr.decode(errors='replace').strip()}")
        try:
            yield path
        finally:
            subprocess.run(["umount", str(path)], check=False, capture_output=True, timeout=MOUNT_TIMEOUT_S)
    finally:
        sleeper.kill()
        sleeper.wait(MOUNT_TIMEOUT_S)
