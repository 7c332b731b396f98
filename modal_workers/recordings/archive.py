"""A dataset folder as a zip (a LeRobot export); unpacking one is :mod:`modal_workers.media.dataset_zip`'s."""

from __future__ import annotations

import zipfile
from pathlib import Path

STORED_SUFFIXES = (".mp4",)
"""Already compressed: stored as they are."""


def zip_folder(root: Path, target: Path) -> Path:
    """Zip every file under ``root`` (names relative to it, in sorted order) into ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            method = zipfile.ZIP_STORED if path.suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
            archive.write(path, path.relative_to(root).as_posix(), compress_type=method)
    return target
