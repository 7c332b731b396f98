"""``gpurelay status``: what the platform holds and does, read from NATS (and the dispatcher's /healthz).

* streams: messages, bytes, age of the oldest message, consumers;
* consumers: every durable one with its lag (``num_pending``), ``num_ack_pending`` and redeliveries;
  ephemeral ones (one per SSE connection) counted per stream;
* KV buckets: keys and bytes;
* dispatch per kind: tickets in ``DISPATCH`` (one per queued or running attempt), those held by a
  dispatcher (``dispatch-{kind}``'s ack pending: running, or waiting out a retry delay) and waiting;
* the local pool's occupancy, from ``--dispatcher-url``'s ``/healthz``;
* webhook endpoints failing: those with dead letters, or whose queue has redelivered messages (a
  retry under way), with what waits in their queue.

The JetStream API is asked directly (``$JS.API.STREAM.INFO``, ``CONSUMER.LIST``) for fields nats-py
drops (``first_ts``, ``num_subjects``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from nats.aio.client import Client as NatsClient

from contracts.streams import DEADLETTER, DISPATCH, KV_WEBHOOK_DELIVERIES, WEBHOOK_DELIVERIES, declarations
from contracts.subjects import Namespace
from services.common.config import BaseServiceSettings

API = "$JS.API"
EXTRA_BUCKETS = (KV_WEBHOOK_DELIVERIES,)
"""Buckets a service declares itself (the notifier's delivery states)."""
TIMEOUT_S = 5.0


async def _api(nc: NatsClient, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = await nc.request(f"{API}.{subject}", json.dumps(body).encode() if body else b"", timeout=TIMEOUT_S)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def stream_info(nc: NatsClient, name: str, subjects_filter: str | None = None) -> dict[str, Any] | None:
    """A stream's info as the server sends it (``None``: no such stream)."""
    answer = await _api(nc, f"STREAM.INFO.{name}", {"subjects_filter": subjects_filter} if subjects_filter else None)
    return None if "error" in answer else answer


async def consumers(nc: NatsClient, stream: str) -> list[dict[str, Any]]:
    """Every consumer of ``stream`` (the API pages them)."""
    found: list[dict[str, Any]] = []
    while True:
        page = await _api(nc, f"CONSUMER.LIST.{stream}", {"offset": len(found)})
        batch = page.get("consumers") or []
        found += batch
        if not batch or len(found) >= int(page.get("total", 0)):
            return found


def _age_s(first_ts: str | None, now: datetime) -> float | None:
    """Seconds since ``first_ts`` (``None`` for an empty stream)."""
    if not first_ts or first_ts.startswith("0001-"):
        return None
    whole, _, fraction = first_ts.removesuffix("Z").partition(".")  # the server sends nanoseconds
    when = datetime.fromisoformat(whole + (f".{fraction[:6]}" if fraction else "")).replace(tzinfo=UTC)
    return round(max(0.0, (now - when).total_seconds()), 3)


def _base(ns: Namespace, name: str) -> str:
    """A stream or bucket name without the namespace (``t1_JOBS`` → ``JOBS``)."""
    return name.removeprefix(f"{ns.name}_") if ns.name else name


def _subject_counts(info: dict[str, Any] | None) -> dict[str, int]:
    return {k: int(v) for k, v in ((info or {}).get("state", {}).get("subjects") or {}).items()}


async def collect(nc: NatsClient, settings: BaseServiceSettings, dispatcher_url: str | None = None) -> dict[str, Any]:
    """Everything ``gpurelay status`` shows, as one JSON-ready dict."""
    ns, now = settings.ns, datetime.now(UTC)
    decls = declarations(ns)
    out: dict[str, Any] = {"namespace": ns.name, "streams": [], "consumers": [], "kv": []}
    infos: dict[str, dict[str, Any]] = {}
    for stream in decls.streams:
        if (info := await stream_info(nc, stream.name)) is None:
            continue
        infos[stream.name] = info
        state = info["state"]
        out["streams"].append(
            {"stream": _base(ns, stream.name), "messages": state["messages"], "bytes": state["bytes"],
             "oldest_age_s": _age_s(state.get("first_ts"), now), "consumers": state.get("consumer_count", 0)}
        )  # fmt: skip
        out["consumers"] += (
            await _consumers(nc, stream.name, _base(ns, stream.name)) if state.get("consumer_count") else []
        )
    for bucket in [b.name for b in decls.buckets] + [ns.bucket(name) for name in EXTRA_BUCKETS]:
        if (info := await stream_info(nc, f"KV_{bucket}")) is not None:
            state = info["state"]
            out["kv"].append(
                {"bucket": _base(ns, bucket), "keys": state.get("num_subjects", 0), "bytes": state["bytes"]}
            )
    out["dispatch"] = await _dispatch(nc, settings, out["consumers"])
    out["webhooks_failing"] = await _failing_webhooks(nc, settings, out["consumers"])
    out["local_pool"] = await _pool(dispatcher_url)
    return out


async def _consumers(nc: NatsClient, stream: str, label: str) -> list[dict[str, Any]]:
    """The durable consumers of ``stream`` with their lag, and one row counting the ephemeral ones."""
    rows, ephemeral = [], 0
    for info in await consumers(nc, stream):
        config = info.get("config", {})
        if not config.get("durable_name"):
            ephemeral += 1
            continue
        rows.append(
            {"stream": label, "consumer": info["name"], "filter": config.get("filter_subject") or "",
             "num_pending": info.get("num_pending", 0), "num_ack_pending": info.get("num_ack_pending", 0),
             "num_redelivered": info.get("num_redelivered", 0), "num_waiting": info.get("num_waiting", 0)}
        )  # fmt: skip
    if ephemeral:
        rows.append({"stream": label, "consumer": f"({ephemeral} ephemeral)", "filter": "", "num_pending": None,
                     "num_ack_pending": None, "num_redelivered": None, "num_waiting": None})  # fmt: skip
    return rows


async def _dispatch(nc: NatsClient, settings: BaseServiceSettings, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tickets per kind: in the stream, held by a dispatcher (running or waiting out a delay), waiting."""
    prefix = settings.ns.subject("dispatch.")
    tickets = _subject_counts(await stream_info(nc, settings.ns.stream(DISPATCH), prefix + ">"))
    held = {r["consumer"].removeprefix("dispatch-"): r["num_ack_pending"] or 0 for r in rows
            if r["stream"] == DISPATCH and r["consumer"].startswith("dispatch-")}  # fmt: skip
    kinds = sorted({subject.removeprefix(prefix) for subject in tickets} | held.keys())
    return [
        {"kind": kind, "tickets": tickets.get(prefix + kind, 0), "running": held.get(kind, 0),
         "waiting": max(0, tickets.get(prefix + kind, 0) - held.get(kind, 0)), "consumer": kind in held}
        for kind in kinds
    ]  # fmt: skip


async def _failing_webhooks(
    nc: NatsClient, settings: BaseServiceSettings, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Endpoints (``tenant/endpoint``) with dead letters or a retry under way, and their queue depth."""
    prefix = settings.ns.subject("webhooks.")
    dead = _subject_counts(await stream_info(nc, settings.ns.stream(DEADLETTER), prefix + "*.*.dead"))
    queued = _subject_counts(await stream_info(nc, settings.ns.stream(WEBHOOK_DELIVERIES), prefix + "*.*.deliver"))
    found: dict[str, dict[str, Any]] = {}

    def row(subject: str) -> dict[str, Any]:
        tenant, endpoint, _ = subject.removeprefix(prefix).split(".")
        key = f"{tenant}/{endpoint}"
        return found.setdefault(key, {"tenant": tenant, "endpoint": endpoint, "dead_letters": 0, "retrying": 0})

    for subject, count in dead.items():
        row(subject)["dead_letters"] = count
    for r in rows:
        if r["stream"] == WEBHOOK_DELIVERIES and r["consumer"].startswith("whd_") and (r["num_redelivered"] or 0) > 0:
            row(r["filter"])["retrying"] = r["num_redelivered"]
    for item in found.values():
        item["queued"] = queued.get(f"{prefix}{item['tenant']}.{item['endpoint']}.deliver", 0)
    return sorted(found.values(), key=lambda r: (-r["dead_letters"], -r["retrying"], r["tenant"], r["endpoint"]))


async def _pool(dispatcher_url: str | None) -> dict[str, Any] | None:
    """The dispatcher's local pool occupancy from its ``/healthz`` (``None``: not asked, or not exposed)."""
    if not dispatcher_url:
        return None
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
            body = (await http.get(dispatcher_url.rstrip("/") + "/healthz")).json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
    pool = body.get("local_pool") if isinstance(body, dict) else None
    return pool if isinstance(pool, dict) else None
