// The client's own rules: one credential, no API key in a browser, tokens.create's request (the
// route comes with the App API), the event types it listens for (docs/asyncapi.json).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, test } from "node:test";
import { BrowserKeyError, createClient, GpurelayError, JOB_EVENT_TYPES } from "../dist/index.js";
import { nodeClient, recordingFetch, stack } from "./support/helpers.mjs";

describe("createClient", () => {
  afterEach(() => {
    delete globalThis.window;
  });

  test("an API key where a window exists is refused, saying what to do instead", () => {
    globalThis.window = {};
    assert.throws(() => createClient({ baseUrl: stack.url, apiKey: stack.apiKey }), (e) => {
      assert.ok(e instanceof BrowserKeyError);
      assert.match(e.message, /never reach a browser/);
      assert.match(e.message, /tokens\.create/);
      assert.doesNotMatch(e.message, new RegExp(stack.apiKey));
      return true;
    });
    assert.ok(createClient({ baseUrl: stack.url, token: "a-scoped-token" }), "a token is what a browser holds");
  });

  test("tokens.create refuses in a browser even with a client made before the window existed", async () => {
    const client = nodeClient();
    globalThis.window = {};
    await assert.rejects(client.tokens.create({ scopes: ["jobs:write"] }), BrowserKeyError);
  });

  test("exactly one credential, and an http(s) base URL", () => {
    assert.throws(() => createClient({ baseUrl: stack.url }), /exactly one credential/);
    assert.throws(() => createClient({ baseUrl: stack.url, token: "t", apiKey: "k" }), /exactly one credential/);
    assert.throws(() => createClient({ baseUrl: "localhost:8000", token: "t" }), /http\(s\) URL/);
  });

  test("a token as a function is asked again once after a 401", async () => {
    const given = ["gr_0000000000000000_expired", stack.apiKey];
    const client = createClient({ baseUrl: stack.url, token: () => given.shift() });
    const page = await client.jobs.list({ limit: 1 });
    assert.ok(Array.isArray(page.items));
    assert.equal(given.length, 0, "asked twice");
  });
});

describe("tokens.create", () => {
  test("sends the App API's request shape with the API key", async () => {
    const recorder = recordingFetch();
    const client = nodeClient({ fetch: recorder.fetch });
    const request = { scopes: ["jobs:write", "uploads:write", "robots:write"], kinds: ["pose"], subject: "user-42", robotId: "arm-1", ttlS: 900 };
    const minted = await client.tokens.create(request);
    const sent = recorder.requests.at(-1);
    assert.equal(sent.method, "POST");
    assert.equal(new URL(sent.url).pathname, "/v1/tokens");
    assert.equal(sent.headers.authorization, `Bearer ${stack.apiKey}`);
    assert.deepEqual(JSON.parse(sent.body), { scopes: ["jobs:write", "uploads:write", "robots:write"], kinds: ["pose"], subject: "user-42", robot_id: "arm-1", ttl_s: 900 });
    assert.equal(sent.status, 201);
    assert.deepEqual(minted.scopes, ["jobs:write", "uploads:write", "robots:write"]);
    assert.deepEqual([minted.kinds, minted.subject, minted.robot_id], [["pose"], "user-42", "arm-1"]);
    const lifetime = (Date.parse(minted.expires_at) - Date.now()) / 1000;
    assert.ok(lifetime > 880 && lifetime <= 900, `expires in ${lifetime} s`);
    const asTheToken = createClient({ baseUrl: stack.url, token: minted.token });
    const refused = await asTheToken.jobs.list({ limit: 1 }).catch((e) => e);
    assert.ok(refused instanceof GpurelayError, String(refused));
    assert.equal(refused.status, 403); // jobs:write, not jobs:read
    assert.deepEqual(refused.problem.missing_scope, ["jobs:read"]);
  });

  test("with a token (no API key) it says an API key is needed", async () => {
    const client = createClient({ baseUrl: stack.url, token: "t" });
    await assert.rejects(client.tokens.create({ scopes: ["jobs:read"] }), /needs an API key/);
  });
});

test("the client listens for every job and session event type of docs/asyncapi.json", () => {
  const asyncapi = JSON.parse(readFileSync(join(stack.repo, "docs/asyncapi.json"), "utf8"));
  const names = Object.values(asyncapi.components.messages).map((m) => m.name);
  const expected = names.filter((n) => n.startsWith("job.") || n.startsWith("session.")).sort();
  assert.deepEqual([...JOB_EVENT_TYPES].sort(), expected);
});
