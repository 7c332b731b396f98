"""The committed NATS configs of deploy/ run here: test certificates, the roles' passwords, local copies.

:func:`make_certs` makes a CA and one certificate for every node and client use (names ``localhost``,
``nats``, ``nats-1`` … ``nats-3`` and ``127.0.0.1``; server and client use, as mutual route TLS needs).
:func:`deployable_copy` writes a committed config with only what cannot run here replaced (the TLS
files, the store, the included users file, and the ports and route hosts a test names); the rest, the
fsync setting and the users above all, is the committed text, which :class:`ConfigServer` runs with
the environment those users read their passwords from (:func:`role_password_env`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.nats.permissions import ROLES, Role
from services.common.nats.server.auth import password_variable
from services.common.nats.server.binary import find_nats_server
from services.common.nats.server.config import ServerTls
from services.common.processes import preexec_die_with_parent

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_NATS = ROOT / "deploy" / "nats"
NAMES = ("localhost", "nats", "nats-1", "nats-2", "nats-3")


def role_passwords() -> dict[Role, str]:
    """A test password per role."""
    return {role: f"test-{role}-password" for role in ROLES}


def role_password_env() -> dict[str, str]:
    """This process's environment plus ``GPURELAY_NATS_<ROLE>_PASSWORD`` of every role."""
    return {**os.environ, **{password_variable(role): value for role, value in role_passwords().items()}}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())


def make_certs(folder: Path) -> ServerTls:
    """A CA and a certificate (server and client use) it signed, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpurelay test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in NAMES]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    return ServerTls(
        cert_file=_write(folder / "server.pem", cert.public_bytes(serialization.Encoding.PEM)),
        key_file=_write(folder / "server-key.pem", _pem_key(key)),
        ca_file=_write(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
    )


def deployable_copy(config: Path, folder: Path, tls: ServerTls, replace: dict[str, str] | None = None) -> Path:
    """``config`` written into ``folder`` with the TLS files, the store (``folder/data``) and the
    included users file replaced, and each text of ``replace`` (ports, route hosts), which it must hold."""
    text = config.read_text()
    for name, path in (("server.pem", tls.cert_file), ("server-key.pem", tls.key_file), ("ca.pem", tls.ca_file)):
        text = text.replace(f"/etc/nats/certs/{name}", str(path))
    text = text.replace('store_dir: "/data"', f'store_dir: "{folder / "data"}"')
    text = re.sub(r"^include \S*auth\.conf$", "include auth.conf", text, flags=re.M)  # includes are relative
    for old, new in (replace or {}).items():
        assert old in text, f"{config.name} no longer says {old!r}"
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "auth.conf").write_text((DEPLOY_NATS / "auth.conf").read_text())
    copy = folder / config.name
    copy.write_text(text)
    return copy


class ConfigServer:
    """nats-server on a config file as it is (a :func:`deployable_copy`), the roles' passwords in its
    environment; it dies with this process, and :meth:`stop` ends exactly it."""

    def __init__(self, config: Path, monitor_url: str) -> None:
        self.config, self.monitor_url = config, monitor_url
        self._process: subprocess.Popen[bytes] | None = None
        self.log = config.with_suffix(".log")

    def start(self, timeout_s: float = 60.0) -> ConfigServer:
        """Start it and wait until its monitoring port answers ``/healthz?js-enabled-only=true`` (a cluster
        node: before its peers are up)."""
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(find_nats_server()), "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                env=role_password_env(), preexec_fn=preexec_die_with_parent(signal.SIGTERM),
            )  # fmt: skip
        try:
            self._wait_healthy(timeout_s)
        except BaseException:  # its own deadline, the test's timeout (a signal) or an interrupt
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.monitor_url}/healthz?js-enabled-only=true", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"nats-server on {self.config} did not come up in {timeout_s}s")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def monitor(monitor_url: str, path: str, **params: Any) -> dict[str, Any]:
    """A monitoring endpoint's JSON (``varz``, ``connz``, ``routez``) of the server at ``monitor_url``."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer: dict[str, Any] = (await http.get(f"{monitor_url}/{path}", params=params)).json()
    return answer
