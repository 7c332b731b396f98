"""An uploaded dataset zip unpacked within bounds (a LeRobot import, a session's source).

:func:`unpack` refuses what :func:`~modal_workers.media.zip_names.check_name` refuses (absolute names,
``..``, links, encryption: ``invalid_archive``), more entries than ``max_entries`` or more bytes
than ``max_bytes`` (counted while unpacking, not read from the zip's directory, which a zip bomb
lies in: ``archive_too_large``), and a zip without ``meta/info.json`` (``invalid_dataset``); all as
a :class:`~modal_workers.runtime.errors.PermanentError`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from modal_workers.media.zip_names import check_name
from modal_workers.runtime.errors import PermanentError

BLOCK = 1024 * 1024


@dataclass(frozen=True)
class UnpackLimits:
    """Bounds of an unpacked upload."""

    max_entries: int = 20_000
    max_bytes: int = 8 * 1024**3


def unpack(zip_path: Path, target: Path, limits: UnpackLimits | None = None) -> Path:
    """Unpack ``zip_path`` into ``target``; the dataset's root (the folder holding ``meta/info.json``)."""
    limits = limits or UnpackLimits()
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PermanentError("invalid_archive", "the upload is not a zip archive") from exc
    with archive:
        entries = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
        if len(entries) > limits.max_entries:
            raise PermanentError("archive_too_large", f"the archive holds more than {limits.max_entries} files")
        budget = limits.max_bytes
        for info in entries:
            check_name(info)
            budget = _unpack_entry(archive, info, target / info.filename, budget)
            if budget < 0:
                raise PermanentError("archive_too_large", f"the archive unpacks to more than {limits.max_bytes} bytes")
    found = sorted(target.rglob("meta/info.json"), key=lambda p: len(p.parts))
    if not found:
        raise PermanentError("invalid_dataset", "the archive holds no meta/info.json (not a LeRobot dataset)")
    return found[0].parent.parent


def _unpack_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, budget: int) -> int:
    """Unpack one entry, stopping once ``budget`` bytes are spent; the budget left (negative: overrun)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as source, path.open("wb") as sink:
        while budget >= 0 and (block := source.read(BLOCK)):
            budget -= len(block)
            sink.write(block)
    return budget
