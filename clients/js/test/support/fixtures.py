"""What the TypeScript client's tests take from the Python side (run from the repository root).

``media OUT``: a short lap video and three JPEG frames drawn by OpenCV (real media for uploads,
jobs and session frames). ``tenant NAME --max-queued N`` (``N`` < 0 lifts the limit): an API key of
a new tenant, printed, and that tenant's quota written to KV ``quotas``, as an operator would.
Settings (``GPURELAY_NATS_URL``) come from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import cv2
import numpy as np

from contracts.quotas import TenantQuota
from contracts.streams import KV_APIKEYS, KV_QUOTAS, KV_TENANT_USAGE
from services.common.auth.apikeys import ApiKeyStore
from services.common.config import BaseServiceSettings
from services.common.nats.connection import connect
from services.common.quotas import QuotaBook
from tests.support.lap import square_video, texture


def media(out: Path) -> None:
    """``lap.mp4`` (a moving square, 48 frames) and ``frame-1.jpg`` .. ``frame-3.jpg``."""
    out.mkdir(parents=True, exist_ok=True)
    square_video(out / "lap.mp4")
    for k in range(1, 4):
        image = np.roll(texture(120, 160, seed=k), 8 * k, axis=1)
        ok, encoded = cv2.imencode(".jpg", image)
        assert ok
        (out / f"frame-{k}.jpg").write_bytes(encoded.tobytes())


async def tenant(name: str, max_queued: int, new_key: bool) -> None:
    """Set the quota of ``name``; with ``new_key``, make it a key and print it."""
    settings = BaseServiceSettings()
    nc = await connect(settings, "client-js-tests")
    try:
        js = nc.jetstream()
        book = QuotaBook(
            await js.key_value(settings.ns.bucket(KV_QUOTAS)),
            await js.key_value(settings.ns.bucket(KV_TENANT_USAGE)),
            TenantQuota(),
        )
        await book.set(name, TenantQuota(max_queued=max_queued) if max_queued >= 0 else TenantQuota())
        if new_key:
            keys = ApiKeyStore(await js.key_value(settings.ns.bucket(KV_APIKEYS)))
            _, plaintext = await keys.create(name, "client-js tests")
            print(plaintext)
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("media").add_argument("out", type=Path)
    quota = commands.add_parser("tenant")
    quota.add_argument("name")
    quota.add_argument("--max-queued", type=int, required=True)
    quota.add_argument("--new-key", action="store_true")
    args = parser.parse_args()
    if args.command == "media":
        media(args.out)
    else:
        asyncio.run(tenant(args.name, args.max_queued, args.new_key))


if __name__ == "__main__":
    main()
