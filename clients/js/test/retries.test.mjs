// 429s retried after their Retry-After, bounded, against a real quota: a tenant of its own whose
// `max_queued` is 0 (KV `quotas`, as an operator sets it), so every submit answers 429.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { GpurelayError } from "../dist/index.js";
import { mediaBlob, nodeClient, python, recordingFetch } from "./support/helpers.mjs";

const TENANT = "client-js-quota";
let apiKey;
let video;

describe("retries", () => {
  before(async () => {
    apiKey = python("tenant", TENANT, "--max-queued", "0", "--new-key");
    assert.match(apiKey, /^gr_/);
    video = await nodeClient({ apiKey }).uploads.upload(mediaBlob("lap.mp4", "video/mp4"), { filename: "lap.mp4" });
  });

  test("a 429 is retried maxRetries times with one Idempotency-Key, then thrown with its problem", async () => {
    const recorder = recordingFetch();
    const client = nodeClient({ apiKey, fetch: recorder.fetch, maxRetries: 2, maxRetryDelayMs: 20 });
    const error = await client.jobs.create(spec()).catch((e) => e);
    assert.ok(error instanceof GpurelayError, String(error));
    assert.equal(error.status, 429);
    assert.equal(error.code, "quota_max_queued");
    assert.ok(error.retryAfterS >= 1, `Retry-After ${error.retryAfterS}`);
    const submits = recorder.requests.filter((r) => r.method === "POST" && r.url.endsWith("/v1/jobs"));
    assert.equal(submits.length, 3, "the first try and 2 retries");
    assert.ok(submits.every((r) => r.status === 429));
    assert.equal(new Set(submits.map((r) => r.headers["idempotency-key"])).size, 1, "one key for every try");
  });

  test("maxRetries 0: the 429 at once", async () => {
    const recorder = recordingFetch();
    const client = nodeClient({ apiKey, fetch: recorder.fetch, maxRetries: 0 });
    await assert.rejects(client.jobs.create(spec()), (e) => e instanceof GpurelayError && e.status === 429);
    assert.equal(recorder.requests.length, 1);
  });

  test("the limit lifted while the client waits out Retry-After: the retry creates the job", async () => {
    let lifted = false;
    const recorder = recordingFetch(async (request, requests) => {
      const submits = requests.filter((r) => r.method === "POST" && r.url.endsWith("/v1/jobs"));
      if (submits.length === 2 && !lifted) {
        lifted = true;
        python("tenant", TENANT, "--max-queued", "-1"); // what an operator does; the gateway reads it within 1 s
      }
    });
    // Retry-After (whole seconds, at least 1) outlasts the gateway's 1 s quota cache.
    const client = nodeClient({ apiKey, fetch: recorder.fetch, maxRetries: 5, maxRetryDelayMs: 3_000 });
    const job = await client.jobs.create(spec());
    assert.equal(job.status, "created");
    const statuses = recorder.requests.filter((r) => r.url.endsWith("/v1/jobs")).map((r) => r.status);
    assert.equal(statuses[0], 429);
    assert.equal(statuses.at(-1), 201);
    await client.jobs.cancel(job.id);
  });
});

function spec() {
  return { kind: "pose", inputs: { video: { upload_id: video.id } }, delay_s: 3600 };
}
