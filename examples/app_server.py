"""The web examples' app server: serves one example's built page and mints its browser tokens.

The API key lives here only (``GPURELAY_API_KEY`` in this process's environment, beside
``GPURELAY_URL``). The page asks ``POST /api/token`` and gets ``{token, api, expires_at}``: a
short-lived token (``gpurelay_client``'s ``tokens.create``) that can do only what that example does
(its scopes and job kinds), and the gateway's URL, which the page then calls directly::

    GPURELAY_URL=http://127.0.0.1:8000 GPURELAY_API_KEY=gr_... \\
        python examples/app_server.py lap-compare-web --port 5173

The gateway must allow the page's origin (``PUT /v1/cors`` or ``GPURELAY_CORS_ORIGINS``). Standard
library only, besides the client: a real app mints from its own back end the same way.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gpurelay_client import Client, GpurelayError

HERE = Path(__file__).resolve().parent
TOKEN_TTL_S = 600
"""A page's token lives ten minutes; the page asks again after a 401 (the JS client does)."""


@dataclass(frozen=True)
class Grant:
    """What one example's page may do."""

    scopes: tuple[str, ...]
    kinds: tuple[str, ...]


GRANTS = {
    "lap-compare-web": Grant(("uploads:write", "jobs:write", "jobs:read", "events:read"), ("lap_compare",)),
    "badminton-web": Grant(("uploads:write", "jobs:write", "jobs:read", "events:read"), ("pose",)),
    "live-splat-web": Grant(("sessions:write", "jobs:read", "events:read"), ("splat",)),
}


class AppHandler(SimpleHTTPRequestHandler):
    """Static files from the example's ``dist/``, and ``POST /api/token``."""

    def __init__(self, *args: Any, client: Client, grant: Grant, subject: str, **kwargs: Any) -> None:
        self.client, self.grant, self.subject = client, grant, subject
        super().__init__(*args, **kwargs)

    def do_POST(self) -> None:
        if self.path != "/api/token":
            self.send_error(404)
            return
        try:
            minted = self.client.tokens.create(
                self.grant.scopes, kinds=self.grant.kinds, subject=self.subject, ttl_s=TOKEN_TTL_S
            )
        except GpurelayError as exc:
            self._json(502, {"error": f"could not mint a token: {type(exc).__name__}"})
            return
        api = str(self.client.options.base_url).rstrip("/")
        self._json(200, {"token": minted.token, "api": api, "expires_at": minted.expires_at.isoformat()})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("cache-control", "no-store")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("example", choices=sorted(GRANTS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5173, help="0 picks a free port")
    parser.add_argument("--subject", default="example-visitor", help="your end user's id, recorded on jobs")
    args = parser.parse_args(argv)
    site = HERE / args.example / "dist"
    if not (site / "index.html").is_file():
        parser.error(f"{site} is not built: cd examples/{args.example} && npm ci && npm run build")
    client = Client(os.environ["GPURELAY_URL"], api_key=os.environ["GPURELAY_API_KEY"], timeout=30)
    handler = partial(AppHandler, client=client, grant=GRANTS[args.example], subject=args.subject, directory=str(site))
    with ThreadingHTTPServer((args.host, args.port), handler) as server:
        print(f"serving {args.example} on http://{args.host}:{server.server_address[1]}", flush=True)
        try:
            server.serve_forever()
        finally:
            client.close()


if __name__ == "__main__":
    main()
