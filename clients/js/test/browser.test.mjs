// The client in a real browser (Debian's Chromium through playwright-core, never a downloaded one),
// on an app's own origin (CORS), with what a browser holds: a short-lived token. Native fetch,
// XMLHttpRequest (upload progress), EventSource and WebSocket; an API key refused in a real window.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { mintedToken, stack } from "./support/helpers.mjs";

const CHROMIUM = "/usr/bin/chromium";
const required = process.env.GPURELAY_REQUIRE_BROWSER === "1";
const missing = !existsSync(CHROMIUM) && `${CHROMIUM} is missing (apt-get install chromium): the browser tests skip`;
if (missing && required) throw new Error(`${CHROMIUM} is missing and GPURELAY_REQUIRE_BROWSER=1`);

describe("in a browser", { skip: missing }, () => {
  let browser;
  let page;
  let home;
  const problems = [];

  before(async () => {
    home = mkdtempSync(join(tmpdir(), "gpurelay-client-chromium-"));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
      env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, "config"), XDG_CACHE_HOME: join(home, "cache") },
    });
    page = await browser.newPage();
    page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    await page.goto(`${stack.origin}/test/browser/page.html`);
    await page.evaluate(async () => {
      window.gpurelay = await import("/dist/index.js");
    });
  });

  after(async () => {
    await browser?.close();
    if (home) rmSync(home, { recursive: true, force: true });
    assert.deepEqual(problems, []);
  });

  test("an API key is refused in a real window; tokens.create too", async () => {
    const outcome = await page.evaluate(async ({ url, key }) => {
      const { createClient } = window.gpurelay;
      let refused;
      try {
        createClient({ baseUrl: url, apiKey: key });
      } catch (e) {
        refused = `${e.name}: ${e.message}`;
      }
      const tokens = createClient({ baseUrl: url, token: "t" }).tokens;
      const minted = await tokens.create({ scopes: ["jobs:write"] }).then(() => "minted", (e) => e.name);
      return { refused, minted };
    }, { url: stack.url, key: stack.apiKey });
    assert.match(outcome.refused ?? "", /^BrowserKeyError: An API key must never reach a browser/);
    assert.equal(outcome.minted, "BrowserKeyError");
  });

  test("with a token: upload through XMLHttpRequest with progress, a job followed over EventSource to its end", async () => {
    const token = await mintedToken(["uploads:write", "jobs:write", "jobs:read", "events:read"]);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Network.enable");
    // 2 MB at 1 MB/s: the upload lasts about two seconds, so its progress has steps between 0 and all.
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 1_000_000 });
    const video = [...readFileSync(join(stack.media, "lap.mp4"))];
    const outcome = await page.evaluate(async ({ url, token, video }) => {
      const { createClient } = window.gpurelay;
      let opened = 0;
      const open = XMLHttpRequest.prototype.open;
      XMLHttpRequest.prototype.open = function (...args) {
        opened += 1;
        return open.apply(this, args);
      };
      const client = createClient({ baseUrl: url, token });
      const padded = new Uint8Array(2_000_000);
      padded.set(video); // an mp4 header, then zeros: the bytes still read as video/mp4
      const progress = [];
      const upload = await client.uploads.upload(new File([padded], "big.mp4", { type: "video/mp4" }), {
        onProgress: (p) => progress.push(p),
      });
      const small = await client.uploads.upload(new File([new Uint8Array(video)], "lap.mp4", { type: "video/mp4" }));
      const job = await client.jobs.create({ kind: "lap_compare", inputs: { video: { upload_id: small.id } } });
      const types = [];
      const end = await new Promise((resolve, reject) =>
        client.jobs.subscribe(job.id, (e) => types.push(e.type), { onEnd: resolve, onError: reject }),
      );
      const done = await client.jobs.wait(job.id);
      return { opened, upload, progress, types, end: end.type, status: done.status, usedEventSource: job.urls.events.includes("token=") };
    }, { url: stack.url, token, video });
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    assert.equal(outcome.upload.status, "completed");
    assert.equal(outcome.upload.size, 2_000_000);
    assert.ok(outcome.opened >= 2, "the bytes went through XMLHttpRequest");
    const between = outcome.progress.filter((p) => p.loaded > 0 && p.loaded < p.total);
    assert.ok(between.length >= 2, `progress between 0 and all: ${JSON.stringify(outcome.progress)}`);
    assert.deepEqual(outcome.progress.at(-1), { loaded: 2_000_000, total: 2_000_000 });
    assert.equal(outcome.end, "job.succeeded");
    assert.equal(outcome.types[0], "job.created");
    assert.equal(outcome.status, "succeeded");
  });

  test("with a token: a live session over the browser's WebSocket, acks and results", async () => {
    const token = await mintedToken(["sessions:write", "events:read"]);
    const jpeg = [...readFileSync(join(stack.media, "frame-1.jpg"))];
    const outcome = await page.evaluate(async ({ url, token, jpeg }) => {
      const { createClient } = window.gpurelay;
      const client = createClient({ baseUrl: url, token });
      const session = await client.sessions.start({ kind: "vlm", params: { prompt: "who is there?" } });
      const results = [];
      const twoResults = new Promise((resolve) =>
        session.on("result", (e) => results.push(e.data.first_seq) === 2 && resolve()),
      );
      const blob = new Blob([new Uint8Array(jpeg)], { type: "image/jpeg" });
      const acks = [await session.sendFrame(blob), await session.sendFrame(await blob.arrayBuffer())];
      await twoResults;
      await session.stop();
      const record = await session.finished();
      return { acks: acks.map((a) => a.seq), results, status: record.status, seqs: record.result.seqs };
    }, { url: stack.url, token, jpeg });
    assert.deepEqual(outcome.acks, [1, 2]);
    assert.deepEqual(outcome.results, [1, 2]);
    assert.equal(outcome.status, "succeeded");
    assert.deepEqual(outcome.seqs, [1, 2]);
  });
});
