"""Which zip entries may be unpacked: the one check every workload that takes an uploaded archive uses."""

from __future__ import annotations

import stat
import zipfile

from modal_workers.runtime.errors import PermanentError


def check_name(info: zipfile.ZipInfo) -> None:
    """Refuse (``invalid_archive``) an entry whose name escapes the folder it is unpacked into, that is a
    link, or that is encrypted."""
    name = info.filename
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise PermanentError("invalid_archive", f"{name!r} is an absolute path or leaves the archive's folder")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise PermanentError("invalid_archive", f"{name!r} is a symbolic link")
    if info.flag_bits & 0x1:
        raise PermanentError("invalid_archive", f"{name!r} is encrypted")
