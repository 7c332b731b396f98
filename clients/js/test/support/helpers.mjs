// What the client's tests share: the running stack's settings, a Node client of it, a fetch that
// records what it sends, and a TCP proxy whose connections a test can cut (a real drop).
import { EventSource } from "eventsource";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, connect } from "node:net";
import { join } from "node:path";
import WebSocket from "ws";
import { createClient } from "../../dist/index.js";

export const stack = {
  url: must("GPURELAY_TEST_URL"),
  apiKey: must("GPURELAY_TEST_API_KEY"),
  natsUrl: must("GPURELAY_TEST_NATS_URL"),
  natsUser: process.env.GPURELAY_TEST_NATS_USER ?? "",
  natsPassword: process.env.GPURELAY_TEST_NATS_PASSWORD ?? "",
  media: must("GPURELAY_TEST_MEDIA"),
  marks: must("GPURELAY_TEST_MARKS"),
  origin: must("GPURELAY_TEST_ORIGIN"),
  repo: must("GPURELAY_TEST_REPO"),
};

// A test file outlives nothing: should the runner (which owns the stack) die, it exits too.
const runner = Number(must("GPURELAY_TEST_RUNNER_PID"));
setInterval(() => {
  try {
    process.kill(runner, 0);
  } catch {
    process.exit(1);
  }
}, 1000).unref();

function must(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests with \`npm test\` (test/run.mjs starts the stack)`);
  return value;
}

/** A Node client of the test stack with the dev key, `ws` and `eventsource`; `options` override. */
export function nodeClient(options = {}) {
  return createClient({ baseUrl: stack.url, apiKey: stack.apiKey, WebSocket, EventSource, ...options });
}

/** A file of the test media (drawn by OpenCV) as a Blob. */
export function mediaBlob(name, type) {
  return new Blob([readFileSync(join(stack.media, name))], { type });
}

/** A fetch that records each request (method, url, headers, body) and then really sends it. */
export function recordingFetch(before = async () => undefined) {
  const requests = [];
  const record = async (url, init = {}) => {
    const headers = Object.fromEntries(new Headers(init.headers).entries());
    const entry = { method: init.method ?? "GET", url: String(url), headers, body: typeof init.body === "string" ? init.body : undefined };
    requests.push(entry);
    await before(entry, requests);
    const response = await fetch(url, init);
    entry.status = response.status;
    return response;
  };
  return { fetch: record, requests };
}

/** A TCP proxy to `target` (a URL's host and port); `drop()` cuts every open connection, `mute()` drops what
 * the server sends from then on (an answer lost on its way, or a host gone: a close from the server is not
 * passed on either, so the client's side stays open and silent) until `mute(false)`, and `lost()`
 * resolves once it has dropped some. */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const open = new Set();
  let connections = 0;
  let muted = false;
  let onLost = () => undefined;
  const server = createServer((inbound) => {
    connections += 1;
    const outbound = connect(Number(port), hostname);
    open.add(inbound).add(outbound);
    const forget = () => {
      open.delete(inbound);
      open.delete(outbound);
      inbound.destroy();
      outbound.destroy();
    };
    const hangUp = () => {
      if (!muted) return forget();
      open.delete(outbound); // the client is not told: to it the connection is open, and silent
      outbound.destroy();
    };
    inbound.on("error", forget).on("close", forget);
    outbound.on("error", hangUp).on("close", hangUp);
    inbound.pipe(outbound);
    outbound.on("data", (chunk) => {
      if (!muted) inbound.write(chunk);
      else onLost();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const proxyPort = server.address().port;
  return {
    get connections() {
      return connections;
    },
    /** `url` sent through the proxy instead. */
    rewrite(url) {
      const u = new URL(url);
      u.host = `127.0.0.1:${proxyPort}`;
      return u.toString();
    },
    drop() {
      for (const socket of open) socket.destroy();
      open.clear();
    },
    mute(on = true) {
      muted = on;
    },
    lost() {
      return new Promise((resolve) => {
        onLost = () => {
          onLost = () => undefined;
          resolve();
        };
      });
    },
    close() {
      this.drop();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** `Impl` (an EventSource or WebSocket class) whose connections go through `proxy`; `urls` lists them,
 * and `onConnect(url)` is called as each opens. */
export function throughProxy(Impl, proxy, onConnect = () => undefined) {
  const urls = [];
  class Proxied extends Impl {
    constructor(url, ...rest) {
      urls.push(url);
      onConnect(url);
      super(proxy.rewrite(url), ...rest);
    }
  }
  return { Impl: Proxied, urls };
}

/** A promise with its resolve, for a test to wait on an event. */
export function signal() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

/** Run the Python fixtures helper (from the repository root); its stdout. */
export function python(...args) {
  const run = spawnSync(join(stack.repo, ".venv/bin/python"), ["clients/js/test/support/fixtures.py", ...args], {
    cwd: stack.repo,
    env: { ...process.env, PYTHONPATH: stack.repo, GPURELAY_NATS_URL: stack.natsUrl, ...natsIdentity() },
    encoding: "utf8",
  });
  if (run.status !== 0) throw new Error(`fixtures.py ${args.join(" ")}: ${run.stderr}`);
  return run.stdout.trim();
}

/** The operator's NATS user and password for fixtures.py, where the stack runs with users. */
function natsIdentity() {
  return stack.natsUser ? { GPURELAY_NATS_USER: stack.natsUser, GPURELAY_NATS_PASSWORD: stack.natsPassword } : {};
}

/** Let every running `held` pose job finish (bench.harness.fault_workloads). */
export function releaseHeldJobs() {
  writeFileSync(join(stack.marks, "go"), "go");
}

/** A short-lived scoped token minted with the dev key (`POST /v1/tokens`, as an app's server does):
 * what a browser holds. */
export async function mintedToken(scopes) {
  return (await nodeClient().tokens.create({ scopes, ttlS: 600 })).token;
}
