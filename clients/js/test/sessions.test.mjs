// Live sessions over the socket against the real stack, the session kinds routed to the echo
// workload (bench.harness.session_echo): a result per frame, a snapshot every 2 frames, a result
// with every seq on stop.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import WebSocket from "ws";
import { SessionError } from "../dist/index.js";
import { mediaBlob, nodeClient, signal, stack, startProxy, throughProxy } from "./support/helpers.mjs";

const client = nodeClient();
const frame = (k) => readFileSync(join(stack.media, `frame-${k}.jpg`));

/** Resolves with the first `n` values of session event `type`. */
function collect(session, type, n) {
  const got = [];
  const done = signal();
  session.on(type, (value) => {
    got.push(value);
    if (got.length === n) done.resolve(got);
  });
  return done.promise;
}

describe("sessions", () => {
  test("frames are acked in order, results and snapshots come back, stop ends it with its result", async () => {
    const session = await client.sessions.start({ kind: "vlm", params: { prompt: "what moves?" } });
    assert.equal(session.kind, "vlm");
    const results = collect(session, "result", 3);
    const snapshot = collect(session, "snapshot", 1);
    const ended = collect(session, "end", 1);
    const closed = collect(session, "close", 1);
    const acks = await Promise.all([
      session.sendFrame(mediaBlob("frame-1.jpg", "image/jpeg")),
      session.sendFrame(frame(2).buffer.slice(frame(2).byteOffset, frame(2).byteOffset + frame(2).byteLength)),
      session.sendFrame(new Uint8Array(frame(3)), { ts: 1_700_000_000.5 }),
    ]);
    assert.deepEqual(acks.map((a) => a.seq), [1, 2, 3]);
    assert.equal(acks[2].ts, 1_700_000_000.5);
    assert.deepEqual((await results).map((r) => r.data.first_seq), [1, 2, 3]);
    assert.deepEqual((await results).map((r) => r.data.text), ["frame 1", "frame 2", "frame 3"]);
    assert.equal((await snapshot)[0].type, "session.snapshot");
    await session.stop();
    const [end] = await ended;
    assert.equal(end.type, "job.succeeded");
    assert.equal((await closed)[0].code, 1000);
    const record = await session.finished();
    assert.equal(record.status, "succeeded");
    assert.deepEqual(record.result.seqs, [1, 2, 3]);
    assert.equal(record.frames_received, 3);
  });

  test("reset goes over the socket and the worker starts afresh; cancel ends it canceled", async () => {
    const session = await client.sessions.start({ kind: "splat", params: {} });
    const controls = collect(session, "control", 1);
    await session.sendFrame(frame(1));
    await session.sendFrame(frame(2));
    const resetSeen = new Promise((resolve) => session.on("progress", (e) => e.data.message === "reset" && resolve(e)));
    await session.reset();
    assert.deepEqual(await controls, [{ action: "reset" }]);
    await resetSeen;
    await session.sendFrame(frame(3));
    const ended = collect(session, "end", 1);
    await session.cancel();
    assert.equal((await ended)[0].type, "job.canceled");
    assert.equal((await session.finished()).status, "canceled");
  });

  test("a stop after the session ended elsewhere resolves", async () => {
    const session = await client.sessions.start({ kind: "vlm" });
    const ended = collect(session, "end", 1);
    await session.sendFrame(frame(1));
    const other = await client.sessions.connect(session.id);
    await other.stop();
    assert.equal((await ended)[0].type, "job.succeeded");
    assert.equal((await session.finished()).status, "succeeded"); // the record has the end too
    await session.stop(); // the session ended, which is what a stop asks: no 409
    other.close();
  });

  test("a bad frame rejects with the gateway's error code; the socket stays usable", async () => {
    const session = await client.sessions.start({ kind: "vlm" });
    const bad = await session.sendFrame(new TextEncoder().encode("not an image")).catch((e) => e);
    assert.ok(bad instanceof SessionError, String(bad));
    assert.equal(bad.code, "invalid");
    assert.equal((await session.sendFrame(frame(1))).seq, 1);
    await assert.rejects(session.sendFrame(frame(2), { pose: [1, 2, 3] }), TypeError);
    await assert.rejects(session.sendFrame(frame(2), { ts: Number.NaN }), TypeError);
    await session.stop();
    assert.equal((await session.finished()).status, "succeeded");
  });

  test("a dropped socket is opened again with ?after=: no event missed or repeated", async () => {
    const proxy = await startProxy(stack.url);
    const proxied = throughProxy(WebSocket, proxy);
    const viaProxy = nodeClient({ WebSocket: proxied.Impl });
    const session = await viaProxy.sessions.start({ kind: "vlm" });
    const events = [];
    session.on("event", (e) => events.push(e));
    const first = collect(session, "result", 1);
    const results = collect(session, "result", 2);
    assert.equal((await session.sendFrame(frame(1))).seq, 1);
    await first;
    const lastBefore = events.at(-1).seq;
    const down = collect(session, "disconnect", 1);
    const up = collect(session, "reconnect", 1);
    proxy.drop();
    await down;
    // Sent while the socket is down: it waits for the reconnect, then goes.
    assert.equal((await session.sendFrame(frame(2))).seq, 2);
    assert.deepEqual(await up, [{ after: lastBefore }]);
    assert.equal(proxied.urls.length, 2);
    assert.equal(Number(new URL(proxied.urls[1]).searchParams.get("after")), lastBefore);
    assert.deepEqual((await results).map((r) => r.data.first_seq), [1, 2]);
    await session.stop();
    const record = await session.finished();
    assert.deepEqual(record.result.seqs, [1, 2]);
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), "stream order, no event twice");
    assert.equal(events.filter((e) => e.type === "session.result").length, 2);
    await proxy.close();
  });

  test("a socket gone silent is opened again after idleTimeoutMs; its pongs keep a quiet one", async () => {
    const proxy = await startProxy(stack.url);
    const proxied = throughProxy(WebSocket, proxy, () => proxy.mute(false)); // a fresh socket is heard
    const session = await nodeClient({ WebSocket: proxied.Impl }).sessions.start({ kind: "vlm" }, { idleTimeoutMs: 2000 });
    const events = [];
    session.on("event", (e) => events.push(e));
    const first = collect(session, "result", 1);
    assert.equal((await session.sendFrame(frame(1))).seq, 1);
    await first;
    await new Promise((resolve) => setTimeout(resolve, 3500)); // quiet past the idle timeout: pinged at 1 s
    assert.equal(proxied.urls.length, 1, "a quiet socket that answers its pings is kept");
    const lastBefore = events.at(-1).seq;
    const up = collect(session, "reconnect", 1);
    proxy.mute(); // nothing the gateway sends arrives from now on, and the socket stays open
    const second = session.sendFrame(frame(2)); // stored, its ack lost: sent again on the new socket
    assert.deepEqual(await up, [{ after: lastBefore }]);
    assert.equal((await second).seq, 2, "acked on the new socket with the seq it was stored as");
    assert.equal(proxied.urls.length, 2);
    await session.stop();
    assert.deepEqual((await session.finished()).result.seqs, [1, 2]);
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), "stream order, no event twice");
    await proxy.close();
  });

  test("a frame whose ack was lost in a drop is sent again under its key: acked with its seq, stored once", async () => {
    const proxy = await startProxy(stack.url);
    const proxied = throughProxy(WebSocket, proxy);
    const session = await nodeClient({ WebSocket: proxied.Impl }).sessions.start({ kind: "vlm" });
    assert.equal((await session.sendFrame(frame(1))).seq, 1);
    proxy.mute(); // the gateway stores frame 2; its ack goes nowhere
    const second = session.sendFrame(frame(2));
    for (let tries = 0; (await client.sessions.get(session.id)).frames_received < 2; tries += 1) {
      assert.ok(tries < 300, "frame 2 was never stored");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    proxy.mute(false);
    proxy.drop();
    assert.equal((await second).seq, 2, "sent again and stored as a new frame");
    assert.equal((await session.sendFrame(frame(3))).seq, 3);
    assert.equal((await client.sessions.get(session.id)).frames_received, 3);
    assert.equal(proxied.urls.length, 2);
    await session.stop();
    assert.deepEqual((await session.finished()).result.seqs, [1, 2, 3]);
    await proxy.close();
  });

  test("a frame sent again with the app's own key is acked with the seq it was stored as, on another socket too", async () => {
    const session = await client.sessions.start({ kind: "vlm" });
    assert.equal((await session.sendFrame(frame(1), { key: "cam-1" })).seq, 1);
    assert.equal((await session.sendFrame(frame(2), { key: "cam-2" })).seq, 2);
    const again = await client.sessions.connect(session.session.id); // the app gave up on the first socket
    assert.equal((await again.sendFrame(frame(1), { key: "cam-1" })).seq, 1);
    again.close();
    for (const key of ["", "k".repeat(256), "caf\u00e9"]) {
      await assert.rejects(session.sendFrame(frame(3), { key }), TypeError);
    }
    assert.equal((await session.sendFrame(frame(1))).seq, 3); // without a key: a new frame
    assert.equal((await session.refresh()).frames_received, 3);
    await session.stop();
    assert.equal((await session.finished()).status, "succeeded");
  });

  test("connect() opens the socket of an existing session; with after: it replays what followed", async () => {
    const created = await client.sessions.create({ kind: "vlm" });
    assert.equal(created.state, "starting");
    const live = await client.sessions.connect(created.id);
    const seen = [];
    live.on("event", (e) => seen.push(e));
    const result = collect(live, "result", 1);
    await live.sendFrame(frame(1));
    const [first] = await result;
    await live.stop();
    await live.finished();
    // A second socket, after the session ended: everything after `first`, the terminal event last, then it closes.
    const replay = await client.sessions.connect(created.id, { after: first.seq });
    const replayed = [];
    replay.on("event", (e) => replayed.push(e));
    const closed = await new Promise((resolve) => replay.on("close", resolve));
    assert.equal(closed.code, 1000);
    assert.deepEqual(replayed.map((e) => e.seq), seen.filter((e) => e.seq > first.seq).map((e) => e.seq));
    assert.equal(replayed.at(-1).type, "job.succeeded");
  });
});
