"""Who a NATS connection is and how it is protected: the settings' user, password and TLS, as nats-py options.

With ``nats_user`` set, a connection authenticates as that user (its role's, see
:mod:`services.common.nats.permissions`) and takes its replies on the user's own inbox prefix, the only
one its permissions let it read. With ``nats_tls_ca_file`` set, it speaks TLS and verifies the servers
against that CA (and presents ``nats_tls_cert_file`` where the servers verify clients). Neither set: an
anonymous plain connection, as to the tests' shared server. :func:`identity_env` gives a service process
the variables of its users (what compose sets, and a test harness can add).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from contracts.subjects import Namespace
from services.common.config import BaseServiceSettings
from services.common.nats.permissions import Role, inbox_prefix, user_name


def tls_context(settings: BaseServiceSettings) -> ssl.SSLContext | None:
    """The client TLS context of ``settings`` (``None``: plain TCP)."""
    if settings.nats_tls_ca_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.nats_tls_ca_file))
    if settings.nats_tls_cert_file is not None:
        key = settings.nats_tls_key_file
        context.load_cert_chain(str(settings.nats_tls_cert_file), str(key) if key is not None else None)
    return context


def identity_options(settings: BaseServiceSettings) -> dict[str, Any]:
    """nats-py's ``user``, ``password``, ``inbox_prefix`` and ``tls`` for ``settings`` (only those set)."""
    options: dict[str, Any] = {}
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password.get_secret_value() if settings.nats_password else ""
        options["inbox_prefix"] = inbox_prefix(settings.nats_user)
    if (context := tls_context(settings)) is not None:
        options["tls"] = context
    return options


def as_identity(settings: BaseServiceSettings, user: str | None, password: Any) -> BaseServiceSettings:
    """``settings`` (their shared part) connecting as ``user`` instead (unchanged when ``user`` is unset):
    what the dispatcher hands its local pool's workers, and the gateway its ingest route."""
    shared = {name: getattr(settings, name) for name in BaseServiceSettings.model_fields}
    if user:
        shared |= {"nats_user": user, "nats_password": password}
    return BaseServiceSettings.model_construct(**shared)


IDENTITIES: dict[Role, dict[str, Role]] = {
    "gateway": {"nats": "gateway", "ingest_nats": "worker"},
    "dispatcher": {"nats": "dispatcher", "local_worker_nats": "worker"},
    "notifier": {"nats": "notifier"},
    "worker": {"nats": "worker"},
    "operator": {"nats": "operator"},
}
"""The NATS users each process connects as, by settings prefix: its own, and the ``worker`` user the
gateway's ingest route and the dispatcher's pool use."""


def identity_settings(service: Role, ns: Namespace, passwords: Mapping[Role, str]) -> dict[str, str]:
    """``nats_user``, ``nats_password`` (and the ingest or pool pair) of ``service`` in ``ns``."""
    found: dict[str, str] = {}
    for prefix, role in IDENTITIES[service].items():
        found |= {f"{prefix}_user": user_name(ns, role), f"{prefix}_password": passwords[role]}
    return found


def identity_env(service: Role, ns: Namespace, passwords: Mapping[Role, str]) -> dict[str, str]:
    """The same as ``GPURELAY_*`` variables: what a harness adds to a service process's environment."""
    return {f"GPURELAY_{name.upper()}": value for name, value in identity_settings(service, ns, passwords).items()}
