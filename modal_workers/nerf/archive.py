"""The nerf job's photo archive: checked and unpacked safely, before any GPU stage runs.

:func:`unpack_photos` refuses, with a :class:`~modal_workers.runtime.worker_runtime.PermanentError` whose message
names the file:

* ``invalid_archive``: not a zip, an encrypted entry, an absolute name or one with ``..``, a
  backslash or a drive letter (path traversal), a symbolic link, a file that is not a JPEG or PNG
  by its magic bytes, an image whose header or pixels do not decode;
* ``archive_too_large``: more entries than ``max_archive_files``, more bytes unpacked than
  ``max_archive_bytes`` (counted while unpacking, not taken from the zip's directory, which a zip
  bomb lies in), a photo over ``max_image_pixels`` (read from its header before decoding), more
  photos than ``max_images``;
* ``too_few_images``: fewer than ``min_images`` photos.

Entries under ``__MACOSX/`` (Finder's resource forks) and folders are skipped. Photos are written
as ``{index:04d}{ext}`` in name order, so nothing a user named reaches the file system.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from modal_workers.media.zip_names import check_name
from modal_workers.nerf.settings import NerfSettings
from modal_workers.runtime.worker_runtime import PermanentError

JPEG, PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
CHUNK = 1024 * 1024
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


@dataclass(frozen=True)
class Photo:
    """One unpacked photo: its name in the archive, where it lies now and its size."""

    name: str
    path: Path
    width: int
    height: int


def _invalid(message: str) -> PermanentError:
    return PermanentError("invalid_archive", message)


def _too_large(message: str) -> PermanentError:
    return PermanentError("archive_too_large", message)


def image_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's IHDR or a JPEG's start-of-frame marker in ``head``; None if absent."""
    if head.startswith(PNG):
        if len(head) < 24 or head[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    at = 2
    while at + 9 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        length = struct.unpack(">H", head[at + 2 : at + 4])[0]
        if marker in _SOF:
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return int(width), int(height)
        at += 2 + length
    return None


def _copy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> tuple[int, bytes]:
    """Unpack one entry to ``target``, at most ``budget`` bytes; its size and first bytes."""
    written, head = 0, b""
    with archive.open(info) as source, target.open("wb") as sink:
        while block := source.read(CHUNK):
            written += len(block)
            if written > budget:
                raise _too_large(f"the archive unpacks to more than its limit (reached in {info.filename!r})")
            if len(head) < 256 * 1024:
                head += block[: 256 * 1024 - len(head)]
            sink.write(block)
    return written, head


def _photo(info: zipfile.ZipInfo, path: Path, head: bytes, settings: NerfSettings, decode: bool) -> Photo:
    name = info.filename
    if not head.startswith((JPEG, PNG)):
        raise _invalid(f"{name!r} is not a JPEG or PNG image")
    size = image_size(head)
    if size is None or min(size) < 1:
        raise _invalid(f"{name!r} has no readable image header")
    if size[0] * size[1] > settings.max_image_pixels:
        raise _too_large(f"{name!r} has {size[0]}x{size[1]} pixels, over {settings.max_image_pixels}")
    if decode:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None or image.shape[1::-1] != size:
            raise _invalid(f"{name!r} does not decode as an image")
    return Photo(name=name, path=path, width=size[0], height=size[1])


def unpack_photos(archive_path: Path, folder: Path, settings: NerfSettings, *, decode: bool = True) -> list[Photo]:
    """Check the archive and unpack its photos into ``folder`` (name order); ``decode`` decodes each."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _invalid(f"the images input is not a zip archive ({exc})") from None
    folder.mkdir(parents=True, exist_ok=True)
    with archive:
        infos = archive.infolist()
        if len(infos) > settings.max_archive_files:
            raise _too_large(f"the archive has {len(infos)} entries, over {settings.max_archive_files}")
        for info in infos:
            check_name(info)
        entries = sorted(
            (i for i in infos if not i.is_dir() and not i.filename.startswith("__MACOSX/")), key=lambda i: i.filename
        )
        if len(entries) > settings.max_images:
            raise _too_large(f"the archive has {len(entries)} files, over the {settings.max_images} photos allowed")
        photos, left = [], settings.max_archive_bytes
        for index, info in enumerate(entries):
            target = folder / f"{index:04d}.img"
            try:
                written, head = _copy(archive, info, target, left)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
                raise _invalid(f"{info.filename!r} cannot be unpacked ({exc})") from None
            left -= written
            suffix = ".png" if head.startswith(PNG) else ".jpg"
            photo = _photo(info, target, head, settings, decode)
            photos.append(Photo(photo.name, target.rename(target.with_suffix(suffix)), photo.width, photo.height))
    if len(photos) < settings.min_images:
        raise PermanentError(
            "too_few_images", f"the archive has {len(photos)} photos; at least {settings.min_images} are needed"
        )
    return photos


def read_rgba(path: Path) -> np.ndarray:
    """A photo as RGB or RGBA uint8 (alpha kept when it has one)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise _invalid(f"{path.name} does not decode as an image")
    if image.dtype != np.uint8:
        image = (image / 257).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
