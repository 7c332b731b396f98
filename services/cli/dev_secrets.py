"""The secrets ``gpurelay dev`` keeps in its data dir: signing keys, the dev API key, and a NATS
password per service role.

Each lives in ``<data dir>/secrets/<name>`` (the folder 0700, the file 0600), made on first use and
read back afterwards, so keys, signed URLs and NATS users survive restarts. The NATS passwords are in
``secrets/nats/<role>``; :class:`DevNatsUsers` gives the server its ``authorization`` block and each part
of the stack its user (docs/operations.md, NATS users and permissions).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from contracts.streams import Declarations
from contracts.subjects import Namespace
from services.common.nats.identity import identity_env, identity_settings
from services.common.nats.permissions import ROLES, Role
from services.common.nats.server.auth import Password, render_authorization


def dev_secret(data_dir: Path, name: str, make: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    """A random secret kept in the data dir (mode 0600), so keys and signed URLs survive restarts."""
    path = data_dir / "secrets" / name
    if path.exists():
        return path.read_text().strip()
    for folder in (data_dir / "secrets", path.parent):  # each level 0700 (parents=True would not be)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def nats_password_path(data_dir: Path, role: Role) -> Path:
    """Where ``gpurelay dev`` keeps ``role``'s NATS password."""
    return data_dir / "secrets" / "nats" / role


@dataclass(frozen=True)
class DevNatsUsers:
    """One NATS user per role, its password generated into the data dir."""

    ns: Namespace
    passwords: dict[Role, str]

    @classmethod
    def load(cls, data_dir: Path, ns: Namespace) -> DevNatsUsers:
        """Every role's password from the data dir (made on first use)."""
        return cls(ns, {role: dev_secret(data_dir, f"nats/{role}") for role in ROLES})

    def authorization(self, decls: Declarations) -> str:
        """The server's ``authorization`` block: these users, each with its role's permissions."""
        passwords: dict[Role, Password] = dict(self.passwords)
        return render_authorization(self.ns, decls, passwords)

    def settings(self, service: Role) -> dict[str, Any]:
        """Settings of a part of the stack: the users it connects as
        (:data:`~services.common.nats.identity.IDENTITIES`), passwords secret."""
        found = identity_settings(service, self.ns, self.passwords)
        return {name: SecretStr(value) if name.endswith("_password") else value for name, value in found.items()}

    def env(self, service: Role) -> dict[str, str]:
        """The same as ``GPURELAY_*`` variables (``dev.env`` holds the operator's)."""
        return identity_env(service, self.ns, self.passwords)
