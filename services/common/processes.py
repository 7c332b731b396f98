"""Process lifetimes: children that die with their parent, recorded pids, an exclusive directory lock.

- :func:`when_process_ends`: the same for a process that is not the parent (a fork server's child).
- :func:`die_with_parent` (in a child) and :func:`preexec_die_with_parent` (for ``subprocess``):
  on Linux the kernel sends the child a signal when its parent dies (``PR_SET_PDEATHSIG``), even
  by SIGKILL, so neither nats-server nor a pool worker outlives ``gpurelay dev`` in its own
  session. The signal follows the *thread* that started the child, so start children from the
  event loop's thread, which lives as long as the process. Elsewhere it is a no-op (children
  still exit when their pipe closes; a stale nats-server is found by its pidfile).
- :class:`PidFile`: a child's pid on disk, and whether the process it names still runs that
  command (a pid can be reused).
- :class:`DirectoryLock`: ``flock`` on a file in a directory, held while the process lives (the
  kernel drops it when the process dies, however it dies), so two processes never share a data dir.
- :func:`use_scratch`: a process's temporary files in a folder named by its pid, which whoever
  started it removes once it is gone (:mod:`services.dispatcher.running.scratch`).
- :func:`spawning_without_main`: a ``spawn`` (or fork server's) child that does not run the parent's main module again.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()
"""Resolved once, before any fork: a child must not load libraries between fork and exec."""


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """In a child: get ``sig`` when the parent dies; exit now if ``parent_pid`` is already gone."""
    if _PRCTL is not None and _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def when_process_ends(pid: int, action: Callable[[], object]) -> None:
    """Run ``action`` on a daemon thread as soon as process ``pid`` ends, at once if it is gone already.

    For a process whose parent is not the one to follow (a fork server's child follows the dispatcher):
    :func:`wait_exited` waits on its pidfd (Linux 5.3 and newer), which any process may open.
    """

    def wait() -> None:
        while not wait_exited(pid, timeout_s=3600.0):
            pass
        action()

    threading.Thread(target=wait, name=f"when-{pid}-ends", daemon=True).start()


def preexec_die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that makes the child die with this process."""
    parent = os.getpid()

    def preexec() -> None:
        die_with_parent(parent, sig)

    return preexec


SCRATCH_PREFIX = "worker-"


def scratch_folder(root: Path, pid: int) -> Path:
    """The scratch folder under ``root`` of process ``pid`` (see :func:`use_scratch`)."""
    return root / f"{SCRATCH_PREFIX}{pid}"


def use_scratch(root: Path) -> Path:
    """Make this process's scratch folder under ``root`` and send every temporary file there
    (``TMPDIR`` too, for the programs it runs); the folder."""
    folder = scratch_folder(root, os.getpid())
    folder.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = str(folder)
    return folder


@contextmanager
def spawning_without_main() -> Iterator[None]:
    """A ``spawn`` or fork server's child started inside this block does not import this process's main module again.

    multiprocessing's spawn runs the parent's ``__main__`` once more in the child (as ``__mp_main__``), in
    case the target or its arguments were defined there. A target in a named module needs none of it, and
    ``gpurelay``'s main module is its console script, which imports the whole CLI: every local pool
    process paid for it (about 60 MB and over a second of CPU each). Spawn reads ``__main__.__file__`` and
    ``__spec__`` as the child starts (``spawn.get_preparation_data``, inside ``Process.start``), so they are
    hidden for that call, on the caller's thread; the child still gets ``sys.path`` and the directory.
    """
    main = sys.modules.get("__main__")
    path, spec = getattr(main, "__file__", None), getattr(main, "__spec__", None)
    if main is None or (path is None and spec is None):
        yield
        return
    if path is not None:
        del main.__file__
    main.__spec__ = None
    try:
        yield
    finally:
        main.__spec__ = spec
        if path is not None:
            main.__file__ = path


def usable_cores() -> int:
    """The cores this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: it exists
    return state != "Z"


def wait_exited(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for a process that is not our child to exit; whether it did."""
    deadline = time.monotonic() + timeout_s
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        while is_running(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if fd is not None:
                select.select([fd], [], [], left)  # readable once the process has exited
            else:
                time.sleep(min(left, 0.05))
    finally:
        if fd is not None:
            os.close(fd)
    return True


class PidFile:
    """The pid of a process we started, kept in ``path`` while it runs."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, pid: int) -> None:
        """Record ``pid`` (atomically)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.path)

    def remove(self) -> None:
        """Forget the pid."""
        self.path.unlink(missing_ok=True)

    def running(self, *marks: str) -> int | None:
        """The recorded pid when that process still runs and its command line holds every mark."""
        try:
            pid = int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None
        if not is_running(pid):
            return None
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None  # not ours to judge: another user's process, or no /proc
        return pid if all(mark in command for mark in marks) else None


class DirectoryInUseError(RuntimeError):
    """Another live process holds the directory's lock."""


class DirectoryLock:
    """An exclusive ``flock`` on ``{directory}/{name}``, recording the holder's pid in the file."""

    def __init__(self, directory: Path, name: str = ".lock") -> None:
        self.path = Path(directory) / name
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now, or raise :class:`DirectoryInUseError` naming the holder's pid."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DirectoryInUseError(f"{self.path.parent} is in use by process {holder}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (the file stays: removing it would race the next holder)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
