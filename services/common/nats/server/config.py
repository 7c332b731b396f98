"""The config file of an embedded nats-server: JetStream's store and fsync, its cluster, TLS and users.

:class:`ServerConfig` renders what :class:`~services.common.nats.server.embedded.EmbeddedNats` writes (mode 0600:
with users, it holds their passwords). JetStream syncs every write to disk before acknowledging it
(``sync_interval: always``) unless told a period: NATS' default of 2 minutes acknowledges writes that a
power loss or an OS crash can lose (docs/operations.md, Durability).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SYNC_ALWAYS = "always"
MAX_FILE_STORE = 16 * 1024**3
"""JetStream's file store limit for an embedded server: twice the streams' default byte caps (8 GiB).
Left unset, nats-server takes 75 % of the disk free at its start, and a stream whose cap does not fit
that is refused ("insufficient storage resources"), so the stack's start would depend on free disk."""


@dataclass(frozen=True)
class ClusterConfig:
    """This server's part of a cluster: the cluster's name, its route port and every node's route URL."""

    name: str
    port: int
    routes: tuple[str, ...]
    """``nats-route://host:port`` of every node (a node ignores the route to itself)."""

    def block(self, host: str, tls: ServerTls | None = None) -> str:
        """The ``cluster { ... }`` block of the server's config (mutual TLS on its routes with ``tls``)."""
        routes = "".join(f"    {route}\n" for route in self.routes)
        secured = tls.block(verify=True, indent="  ") if tls else ""
        return f"cluster {{\n  name: {self.name}\n  listen: {host}:{self.port}\n  routes: [\n{routes}  ]\n{secured}}}\n"


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate and key, and the CA it trusts: TLS for clients (verified too with
    ``verify_clients``) and mutual TLS for a cluster's routes (each node presents this certificate)."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    verify_clients: bool = False

    def block(self, verify: bool, indent: str = "") -> str:
        """A ``tls { ... }`` block; ``verify``: the peer must present a certificate the CA signed."""
        files = {"cert_file": self.cert_file, "key_file": self.key_file, "ca_file": self.ca_file}
        lines = "".join(f"{indent}  {key}: {_quote(str(path))}\n" for key, path in files.items())
        return f"{indent}tls {{\n{lines}{indent}  verify: {str(verify).lower()}\n{indent}}}\n"


def _quote(text: str) -> str:
    return json.dumps(text)


@dataclass(frozen=True)
class ServerConfig:
    """What an embedded server's config file says."""

    store_dir: Path
    max_payload: int
    host: str
    sync_interval: str = SYNC_ALWAYS
    """``always`` or a Go duration (``120s``): how often JetStream fsyncs its files."""
    server_name: str | None = None
    cluster: ClusterConfig | None = None
    tls: ServerTls | None = None
    authorization: str | None = None
    """An ``authorization { ... }`` block (:func:`~services.common.nats.server.auth.render_authorization`);
    ``None``: any client may connect and do anything (the tests' shared server)."""
    monitor_port: int | None = None
    """The HTTP monitoring port (``/varz``, ``/healthz``) on ``host``; ``None``: none."""
    max_file_store: int | None = MAX_FILE_STORE
    """JetStream's file store limit in bytes; ``None``: nats-server's default (75 % of the free disk)."""

    def render(self) -> str:
        """The config file's text."""
        sync = self.sync_interval if self.sync_interval == SYNC_ALWAYS else _quote(self.sync_interval)
        text = f"max_payload: {self.max_payload}\n"
        limit = "" if self.max_file_store is None else f"  max_file_store: {self.max_file_store}\n"
        text += f"jetstream {{\n  store_dir: {_quote(str(self.store_dir / 'jetstream'))}\n  sync_interval: {sync}\n"
        text += f"{limit}}}\n"
        if self.server_name:
            text += f"server_name: {self.server_name}\n"
        if self.monitor_port is not None:
            text += f"http: {_quote(f'{self.host}:{self.monitor_port}')}\n"
        if self.tls:
            text += self.tls.block(verify=self.tls.verify_clients)
        if self.cluster:
            text += self.cluster.block(self.host, self.tls)
        return text + (self.authorization or "")
