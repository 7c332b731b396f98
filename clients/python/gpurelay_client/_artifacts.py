"""Artifact downloads both clients share: where each file goes (never outside the folder) and a file
written beside its target, hashed as it arrives, kept only when its sha256 and size are the record's."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from gpurelay_client._errors import ChecksumMismatch, GpurelayError
from gpurelay_client._models import Artifact, JobOut


def artifact_path(folder: Path, name: str) -> Path:
    """``folder / name`` for an artifact's relative name (``chunks/0001.ply``); a name that would
    leave the folder (absolute, ``..``) is refused."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or any(p in ("..", ".", "") or "\\" in p for p in parts):
        raise GpurelayError(f"artifact name {name!r} is not a relative path inside the job's results")
    return folder.joinpath(*parts)


def downloadable(job: JobOut, names: Collection[str] | None = None) -> list[Artifact]:
    """The artifacts that can be downloaded now (expired ones have no file any more); only those named
    in ``names`` when given, each of which must be one of the job's."""
    chosen = job.artifacts
    if names is not None:
        unknown = sorted(set(names) - {a.name for a in job.artifacts})
        if unknown:
            raise GpurelayError(f"job {job.id}: no artifact named {', '.join(unknown)}")
        chosen = [a for a in job.artifacts if a.name in names]
    missing = [a.name for a in chosen if not a.expired and not a.url]
    if missing:
        raise GpurelayError(f"job {job.id}: no download URL for {', '.join(missing)}")
    return [a for a in chosen if not a.expired]


class ArtifactFile:
    """One artifact being written: ``<target>.part`` until :meth:`finish` checks and renames it."""

    def __init__(self, folder: Path, artifact: Artifact) -> None:
        self.artifact = artifact
        self.path = artifact_path(folder, artifact.name)
        self.part = self.path.with_name(self.path.name + ".part")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.part.open("wb")
        self._digest = hashlib.sha256()
        self._size = 0

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``."""
        self._handle.write(chunk)
        self._digest.update(chunk)
        self._size += len(chunk)

    def restart(self) -> None:
        """Start over (the download broke and is attempted again)."""
        self._handle.seek(0)
        self._handle.truncate()
        self._digest, self._size = hashlib.sha256(), 0

    def finish(self) -> Path:
        """Check size and sha256 against the record; the final path, or :class:`ChecksumMismatch`."""
        self._handle.close()
        expected, got = self.artifact.sha256, self._digest.hexdigest()
        if self._size != self.artifact.size or (expected is not None and got != expected):
            self.part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{self.artifact.name}: got {self._size} bytes with sha256 {got}, "
                f"the job recorded {self.artifact.size} bytes with sha256 {expected}"
            )
        self.part.replace(self.path)
        return self.path

    def abort(self) -> None:
        """Give up: remove the partial file."""
        self._handle.close()
        self.part.unlink(missing_ok=True)
