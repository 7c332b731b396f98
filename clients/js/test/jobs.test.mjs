// Uploads and jobs against the real embedded stack: upload with progress, create, get, list,
// idempotency, cancel, wait, and subscribe to the end with a resume after a real dropped connection.
// `pose` runs `held` (bench.harness.fault_workloads): it logs steps until the test releases it.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { EventSource } from "eventsource";
import { GpurelayError } from "../dist/index.js";
import {
  mediaBlob,
  nodeClient,
  releaseHeldJobs,
  recordingFetch,
  signal,
  stack,
  startProxy,
  throughProxy,
} from "./support/helpers.mjs";

const client = nodeClient();
let video;

describe("uploads", () => {
  test("upload declares, sends to the pre-signed URL with progress, completes", async () => {
    const blob = mediaBlob("lap.mp4", "video/mp4");
    const progress = [];
    const upload = await client.uploads.upload(blob, { filename: "lap.mp4", onProgress: (p) => progress.push(p) });
    assert.equal(upload.status, "completed");
    assert.equal(upload.size, blob.size);
    assert.equal(upload.filename, "lap.mp4");
    assert.equal(upload.content_type, "video/mp4");
    assert.deepEqual(progress.at(0), { loaded: 0, total: blob.size });
    assert.deepEqual(progress.at(-1), { loaded: blob.size, total: blob.size });
    for (let i = 1; i < progress.length; i += 1) assert.ok(progress[i].loaded >= progress[i - 1].loaded);
    assert.equal((await client.uploads.get(upload.id)).status, "completed");
    video = upload;
  });

  test("the storage's answer lost on a real connection: the bytes are sent again and the upload completes", async () => {
    const proxy = await startProxy(stack.url);
    const blob = mediaBlob("lap.mp4", "video/mp4");
    const puts = [];
    const storageThroughProxy = async (url, init = {}) => {
      if ((init.method ?? "GET") !== "PUT") return fetch(url, init);
      puts.push(String(url));
      if (puts.length > 1) return fetch(proxy.rewrite(url), init);
      proxy.mute(); // the first PUT's answer never reaches the client ...
      const answer = fetch(proxy.rewrite(url), init);
      await proxy.lost();
      proxy.drop(); // ... and its connection is cut: it got no answer at all
      proxy.mute(false);
      return answer;
    };
    const progress = [];
    const viaProxy = nodeClient({ fetch: storageThroughProxy, maxRetryDelayMs: 50 });
    const upload = await viaProxy.uploads.upload(blob, { filename: "lap.mp4", onProgress: (p) => progress.push(p.loaded) });
    await proxy.close();
    assert.equal(upload.status, "completed");
    assert.equal(upload.size, blob.size);
    assert.equal(puts.length, 2, "the PUT was sent again, once");
    assert.equal(puts[0], puts[1], "to the same signed URL");
    assert.deepEqual(progress, [0, 0, blob.size], "progress starts again from 0");
  });

  test("bytes that are not what they claim: the completion's problem, with its field", async () => {
    const fake = new Blob([new Uint8Array(2048).fill(7)], { type: "video/mp4" });
    const error = await client.uploads.upload(fake, { filename: "noise.mp4" }).catch((e) => e);
    assert.ok(error instanceof GpurelayError);
    assert.equal(error.status, 422);
    assert.ok(error.fieldError("content_type"), JSON.stringify(error.errors));
  });
});

describe("jobs", () => {
  before(async () => {
    video ??= await client.uploads.upload(mediaBlob("lap.mp4", "video/mp4"), { filename: "lap.mp4" });
  });

  test("a real lap_compare job: create, get, wait for the end with its events, list", async () => {
    const job = await client.jobs.create({ kind: "lap_compare", inputs: { video: { upload_id: video.id } } });
    assert.equal(job.kind, "lap_compare");
    assert.match(job.urls.events, /[?&]token=/);
    assert.equal((await client.jobs.get(job.id)).id, job.id);
    const seen = [];
    const done = await client.jobs.wait(job.id, { timeoutMs: 120_000, onEvent: (e) => seen.push(e.type) });
    assert.equal(done.status, "succeeded", JSON.stringify(done.error));
    assert.ok(done.result, "a result");
    const names = done.artifacts.map((a) => a.name);
    assert.ok(names.includes("overlay.mp4") && names.includes("metrics.json"), names.join(","));
    assert.equal(seen[0], "job.created");
    assert.equal(seen.at(-1), "job.succeeded");
    assert.ok(seen.includes("job.started"));
    const page = await client.jobs.list({ kind: "lap_compare", limit: 100 });
    assert.ok(page.items.some((j) => j.id === job.id && j.status === "succeeded"));
  });

  test("list pages with cursors; iterate walks them all", async () => {
    const made = [];
    for (let i = 0; i < 3; i += 1) made.push((await client.jobs.create(delayed(video.id))).id);
    // A record says queued up to fold_linger_s after job.queued (the fold waits for a launch to follow).
    for (let tries = 0; tries < 200; tries += 1) {
      const queued = new Set((await client.jobs.list({ kind: "pose", status: "queued", limit: 100 })).items.map((j) => j.id));
      if (made.every((id) => queued.has(id))) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const first = await client.jobs.list({ kind: "pose", limit: 2 });
    assert.equal(first.items.length, 2);
    assert.ok(first.next_cursor);
    const all = [];
    for await (const job of client.jobs.iterate({ kind: "pose", status: "queued", limit: 2 })) all.push(job.id);
    for (const id of made) assert.ok(all.includes(id), `${id} listed`);
    assert.equal(new Set(all).size, all.length, "no job twice");
    await Promise.all(made.map((id) => client.jobs.cancel(id)));
  });

  test("create sends an Idempotency-Key: the same key and body give the same job, another body a 422", async () => {
    const recorder = recordingFetch();
    const recorded = nodeClient({ fetch: recorder.fetch });
    const auto = await recorded.jobs.create(delayed(video.id));
    const sentKey = recorder.requests.at(-1).headers["idempotency-key"];
    assert.match(sentKey, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const again = await recorded.jobs.create({ ...delayed(video.id), idempotencyKey: sentKey });
    assert.equal(again.id, auto.id, "a replayed key answers the same job");
    assert.equal(recorder.requests.at(-1).status, 200);
    const other = await recorded.jobs.create(delayed(video.id)).then((j) => j.id);
    assert.notEqual(other, auto.id, "a fresh key per create");
    const clash = await recorded.jobs.create({ ...delayed(video.id), priority: 9, idempotencyKey: sentKey }).catch((e) => e);
    assert.ok(clash instanceof GpurelayError);
    assert.equal(clash.status, 422);
    await Promise.all([auto.id, other].map((id) => client.jobs.cancel(id)));
  });

  test("cancel a queued job: it ends canceled; a second cancel of the ended job is a 409 problem", async () => {
    const job = await client.jobs.create(delayed(video.id));
    const asked = await client.jobs.cancel(job.id);
    assert.equal(asked.id, job.id);
    const done = await client.jobs.wait(job.id, { timeoutMs: 60_000 });
    assert.equal(done.status, "canceled");
    const error = await client.jobs.cancel(job.id).catch((e) => e);
    assert.ok(error instanceof GpurelayError);
    assert.equal(error.status, 409);
    assert.match(error.detail, /already ended/);
  });

  test("subscribe follows to the terminal event, resuming after a dropped connection without gap or repeat", async () => {
    const proxy = await startProxy(stack.url);
    const events = [];
    const seenAtConnect = [];
    const proxied = throughProxy(EventSource, proxy, () => {
      seenAtConnect.push(events.at(-1)?.seq ?? 0);
      if (seenAtConnect.length === 2) releaseHeldJobs(); // the job cannot end before the drop
    });
    const viaProxy = nodeClient({ EventSource: proxied.Impl });
    const job = await viaProxy.jobs.create({ kind: "pose", inputs: { video: { upload_id: video.id } } });
    let dropped = false;
    const end = new Promise((resolve, reject) => {
      viaProxy.jobs.subscribe(
        job.id,
        (event) => {
          events.push(event);
          if (!dropped && events.length === 2) {
            dropped = true;
            proxy.drop(); // a real cut: both TCP connections are destroyed
          }
        },
        { onEnd: resolve, onError: reject },
      );
    });
    const last = await end;
    await proxy.close();
    assert.equal(last.type, "job.succeeded");
    assert.ok(proxied.urls.length >= 2, "the stream was opened again after the drop");
    const resumedAfter = Number(new URL(proxied.urls[1]).searchParams.get("after"));
    assert.equal(resumedAfter, seenAtConnect[1], "resumed after the last event seen");
    assert.ok(resumedAfter >= events[1].seq);
    const seqs = events.map((e) => e.seq).filter((s) => s !== null);
    assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), "stream order, no event twice");
    const steps = events.filter((e) => e.type === "job.log").map((e) => e.data.message);
    assert.ok(steps.length >= 3, steps.join(","));
    assert.deepEqual(steps, steps.map((_, i) => `step ${i + 1}`), "every step once, in order");
    assert.ok(events.length > events.findIndex((e) => e.seq === resumedAfter) + 1, "events came after the resume");
    const types = events.map((e) => e.type);
    assert.equal(types[0], "job.created");
    assert.equal(types.filter((t) => t === "job.succeeded").length, 1);
    assert.equal(events.at(-1).envelope.job_id, job.id);
  });

  test("a stream gone silent is resumed after idleTimeoutMs; the server's ping events keep a quiet one open", async () => {
    const proxy = await startProxy(stack.url);
    const events = [];
    const seenAtConnect = [];
    const proxied = throughProxy(EventSource, proxy, () => {
      seenAtConnect.push(events.at(-1)?.seq ?? 0);
      proxy.mute(false); // a fresh connection is heard
    });
    const viaProxy = nodeClient({ EventSource: proxied.Impl });
    const job = await viaProxy.jobs.create(delayed(video.id)); // queued for an hour: a quiet stream
    const queued = signal();
    const end = new Promise((resolve, reject) => {
      const onEvent = (event) => (events.push(event), event.type === "job.queued" && queued.resolve());
      viaProxy.jobs.subscribe(job.id, onEvent, { onEnd: resolve, onError: reject, idleTimeoutMs: 3000 });
    });
    await queued.promise;
    await new Promise((resolve) => setTimeout(resolve, 4500)); // quiet past the idle timeout (pings every 1 s here)
    assert.equal(proxied.urls.length, 1, "a quiet stream whose pings come is not taken as cut");
    proxy.mute(); // what the server sends is lost from now on, and the connection stays open
    await client.jobs.cancel(job.id);
    const last = await end;
    await proxy.close();
    assert.equal(last.type, "job.canceled");
    assert.equal(proxied.urls.length, 2, "opened again once, after the silence");
    assert.match(proxied.urls[0], /[?&]ping=event/);
    const resumedAfter = Number(new URL(proxied.urls[1]).searchParams.get("after"));
    assert.equal(resumedAfter, seenAtConnect[1], "resumed after the last event seen");
    const seqs = events.map((e) => e.seq).filter((s) => s !== null);
    assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), "stream order, no event twice");
    const types = events.map((e) => e.type).filter((t) => ["job.created", "job.queued", "job.canceled"].includes(t));
    assert.deepEqual(types, ["job.created", "job.queued", "job.canceled"]);
  });

  test("subscribe's unsubscribe stops the events", async () => {
    const job = await client.jobs.create(delayed(video.id));
    const first = await new Promise((resolve, reject) => {
      const stop = client.jobs.subscribe(job.id, (event) => (stop(), resolve(event)), { onError: reject });
    });
    assert.equal(first.type, "job.created");
    await client.jobs.cancel(job.id);
  });
});

describe("problems", () => {
  test("a 422 names each field at fault", async () => {
    const error = await client.jobs.create({ kind: "lap_compare", inputs: {} }).catch((e) => e);
    assert.ok(error instanceof GpurelayError);
    assert.equal(error.status, 422);
    assert.equal(error.title, "Validation failed");
    assert.ok(error.fieldError("inputs"), JSON.stringify(error.errors));
    assert.equal(error.problem.status, 422);
  });

  test("another id is a 404; a bad key a 401", async () => {
    const missing = await client.jobs.get("job_nope").catch((e) => e);
    assert.ok(missing instanceof GpurelayError);
    assert.equal(missing.status, 404);
    const stranger = nodeClient({ apiKey: "gr_0000000000000000_notakey" });
    const refused = await stranger.jobs.list().catch((e) => e);
    assert.ok(refused instanceof GpurelayError);
    assert.equal(refused.status, 401);
    assert.doesNotMatch(refused.message, /notakey/, "the key stays out of the message");
  });

  test("a create whose answer is lost is sent again with its key: one job", async () => {
    const posts = [];
    const statuses = [];
    const losing = async (url, init = {}) => {
      const response = await fetch(url, init);
      if (init.method === "POST" && String(url).endsWith("/v1/jobs")) {
        posts.push(new Headers(init.headers).get("idempotency-key"));
        statuses.push(response.status);
        if (posts.length === 1) {
          await response.body?.cancel();
          throw new TypeError("fetch failed"); // the server made the job; its answer never came
        }
      }
      return response;
    };
    const job = await nodeClient({ fetch: losing, maxRetryDelayMs: 50 }).jobs.create(delayed(video.id));
    assert.equal(posts.length, 2);
    assert.equal(posts[0], posts[1], "one Idempotency-Key for both tries");
    assert.deepEqual(statuses, [201, 200], "the first try made the job; the second was answered with it");
    await client.jobs.cancel(job.id);
  });

  test("no answer at all is a GpurelayError with status 0", async () => {
    const nowhere = nodeClient({ baseUrl: "http://127.0.0.1:9", maxRetries: 0 });
    const error = await nowhere.jobs.list().catch((e) => e);
    assert.ok(error instanceof GpurelayError);
    assert.equal(error.status, 0);
  });
});

function delayed(uploadId) {
  return { kind: "pose", inputs: { video: { upload_id: uploadId } }, delay_s: 3600 };
}
