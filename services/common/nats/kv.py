"""Listing a KV bucket's keys by filter, exactly.

nats-py lists keys (``kv.keys()``, ``kv.watch(...)`` until its ``None`` marker) with an ordered push
consumer whose "initial values done" marker comes from each message's ``num_pending``, and that
listing ends early now and then (a key written before the listing began is missed). Here
(:func:`kv_entries`) a pull consumer is created with ``LAST_PER_SUBJECT`` and read until the server
says nothing is pending (each fetched message's ``num_pending``). A key written during the listing
comes again with its new value (its old message may be gone by then: a bucket keeps one per key), so
the newest value of each key is kept and a key deleted meanwhile is left out: the listing is the
bucket as it was at its end.

A consumer costs some eight messages whatever it finds (its creation, its info, a pull, the server's
advisories). A filter that matches a few keys is read cheaper by :func:`kv_scan`: the stream leader's
message gets by subject (``next_by_subj``), two messages per stored entry and two for the end. Both
read from the leader, so a write acknowledged before the read began is in it (a direct get may be
answered by a replica that lags, so a batched direct get is not used for this).

A message get (``STREAM.MSG.GET``: ``kv.get`` on a bucket without direct gets, :func:`kv_scan`) carries
the stored headers (a KV update's ``Nats-Expected-Last-Subject-Sequence``, a delete's ``KV-Operation``),
which nats-py parses with :mod:`email`'s ``BytesParser``: about 100 µs a get, more than the rest of
it. :class:`HeaderParser` reads them as nats-py reads a delivered message's (a split per line), in
its place in nats-py's JetStream contexts from the import of this module on (issue 34: CPU per job).

The same message gets say where a reader of any stream starts (:func:`last_seq`, :func:`seq_before`: a
subject's last message, the one before the first stored since a time). nats-py makes an ordered
consumer again after a gap (two missed heartbeats, a restarted server) from the sequence after the last
message it handed on, or from the stream's first when none came yet, and cannot make one started by
time again at all (it keeps the start time beside the sequence it resumes from: nats-server refuses
that, error 10094). A reader that starts at an explicit sequence found here, and drops what comes
before it, reads the same messages either way.

A bucket a service binds at its start (:func:`bind_bucket`) is bound again while JetStream is away for a
moment. A key's compare-and-set writes are :mod:`services.common.nats.kv_writes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.js.client
import nats.js.manager
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

from services.common.nats.publish import until_answered

MARKER_REASON = "Nats-Marker-Reason"
"""Set on the server's own delete/expiry markers (nats-server 2.11+)."""
FETCH_BATCH = 256
FETCH_TIMEOUT_S = 5.0
SCAN_GETS = 4
"""The most entries :func:`kv_scan` reads by message gets before it lists by consumer (about its cost)."""


class ParsedHeaders(dict[str, str]):
    """Headers by name (the last of a repeated one), with ``items()`` as nats-py reads a parsed message."""


class HeaderParser:
    """``parsebytes`` of the header block of a stored message (``Name: value`` lines), for nats-py's
    message gets: what ``email.parser.BytesParser`` gave them (values stripped, names as sent, a line
    without a colon or a name with whitespace skipped), without its cost."""

    def parsebytes(self, raw: bytes) -> ParsedHeaders:
        """The headers in ``raw`` (CRLF-separated lines, up to the blank line)."""
        headers = ParsedHeaders()
        for line in raw.split(b"\r\n"):
            if not line:
                break
            name, colon, value = line.partition(b":")
            key = name.decode("ascii", "replace")
            if colon and key and not any(c.isspace() for c in key):
                headers[key] = value.strip().decode("utf-8", "replace")
        return headers


setattr(nats.js.manager, "BytesParser", HeaderParser)  # noqa: B010 - nats-py's own name, replaced
setattr(nats.js.client, "BytesParser", HeaderParser)  # noqa: B010


@dataclass(frozen=True, slots=True)
class KvItem:
    """The latest value of one key."""

    key: str
    value: bytes
    revision: int


async def kv_entries(kv: KeyValue, key_filter: str = ">", *, meta_only: bool = False) -> list[KvItem]:
    """The latest entry of every live key matching ``key_filter`` (deleted keys left out)."""
    # nats-py keeps a bucket's JetStream context, stream name and subject prefix private.
    js, stream, prefix = kv._js, kv._stream, kv._pre
    sub = await js.pull_subscribe(
        f"{prefix}{key_filter}",
        stream=stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=AckPolicy.NONE,
            headers_only=meta_only or None,
            inactive_threshold=30.0,
            mem_storage=True,
        ),
    )
    latest: dict[str, KvItem | None] = {}
    try:
        remaining = (await sub.consumer_info()).num_pending or 0
        while remaining > 0:
            for msg in await sub.fetch(min(remaining, FETCH_BATCH), timeout=FETCH_TIMEOUT_S):
                remaining = msg.metadata.num_pending
                key = msg.subject[len(prefix) :]
                latest[key] = _entry(key, msg.headers, msg.data, msg.metadata.sequence.stream)
    finally:
        await sub.unsubscribe()
    return [item for item in latest.values() if item is not None]


async def kv_scan(kv: KeyValue, key_filter: str, most_gets: int = SCAN_GETS) -> list[KvItem]:
    """The latest entry of every live key matching ``key_filter`` (as :func:`kv_entries`), read by message
    gets that walk the bucket's stream (``next_by_subj`` from the first sequence: each stored entry, then
    the end's 404) while there are at most ``most_gets``, else by :func:`kv_entries`' consumer. A key
    written while the scan runs is read again at its new place, the newest kept: the bucket as it was
    at the scan's end, as :func:`kv_entries` lists it."""
    js, stream, prefix = kv._js, kv._stream, kv._pre
    latest: dict[str, KvItem | None] = {}
    seq = 1
    for _ in range(most_gets + 1):
        try:
            msg = await js.get_msg(stream, seq=seq, subject=f"{prefix}{key_filter}", next=True)
        except NotFoundError:  # no entry at or after ``seq``: the scan is whole
            return [item for item in latest.values() if item is not None]
        key, found = (msg.subject or "")[len(prefix) :], msg.seq or seq
        latest[key] = _entry(key, msg.headers, msg.data, found)  # a later one wins
        seq = found + 1
    return await kv_entries(kv, key_filter)


async def kv_last(kv: KeyValue, key: str) -> KvItem | None:
    """``key``'s latest entry as the bucket's stream leader holds it (a message get: a direct get may be
    answered by a replica that lags); ``None`` when deleted or never written."""
    try:
        msg = await kv._js.get_last_msg(kv._stream, f"{kv._pre}{key}")
    except NotFoundError:
        return None
    return _entry(key, msg.headers, msg.data, msg.seq or 0)


def _entry(key: str, headers: dict[str, str] | None, data: bytes | None, seq: int) -> KvItem | None:
    """The entry a stored message holds; ``None`` for a delete, a purge or the server's own marker."""
    headers = headers or {}
    gone = headers.get(KV_OP) in (KV_DEL, KV_PURGE) or headers.get(MARKER_REASON)
    return None if gone else KvItem(key, data or b"", seq)


NO_MESSAGE_FOUND = 10037
"""JetStream's error code for a message get that matched nothing."""


async def last_seq(js: JetStreamContext, stream: str, subject: str | None = None) -> int:
    """The sequence of ``subject``'s last message in ``stream`` (the stream's last without a subject; 0
    when there is none)."""
    if subject is None:
        return int((await js.stream_info(stream)).state.last_seq)
    try:
        msg = await js.get_last_msg(stream, subject)
    except NotFoundError:
        return 0
    return int(msg.seq or 0)


async def seq_before(js: JetStreamContext, stream: str, since: datetime, subject: str | None = None) -> int:
    """The sequence before the first message (of ``subject``, when given) stored at or after ``since`` in
    ``stream``; the stream's last when there is none (read first: a message stored meanwhile is found by
    the get). A message get by time, which nats-py does not offer."""
    before = await last_seq(js, stream)
    request: dict[str, str] = {"start_time": since.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    if subject is not None:
        request["next_by_subj"] = subject
    api = f"{js._prefix}.STREAM.MSG.GET.{stream}"
    answer = json.loads((await js._nc.request(api, json.dumps(request).encode(), timeout=js._timeout)).data)
    if "message" in answer:
        return int(answer["message"]["seq"]) - 1
    if answer.get("error", {}).get("err_code") == NO_MESSAGE_FOUND:
        return before
    raise APIError.from_error(answer.get("error", {}))


async def bind_bucket(js: JetStreamContext, name: str) -> KeyValue:
    """Bind the declared bucket ``name``, again while JetStream is away for a moment: a cluster between
    meta leaders answers 503 (10008) even just after the declarations were answered, and a service that
    starts then waits for it instead of exiting (a notifier did, in a fresh clone's cluster fault test)."""
    return await until_answered(lambda: js.key_value(name), f"bind KV {name}")
