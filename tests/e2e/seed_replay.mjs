// The harness that replays the live-splat seed's React calls under Node (tests/e2e/test_session_compat.py).
//
// Python puts the seed's snippet (tests/fixtures/seeds/live_splat_client.js), unchanged, where the
// SEED marker line is, so the snippet and this harness are one ES module: the prelude gives it what
// a browser and Vite would (import.meta.env.VITE_API_URL, a canvas whose toBlob yields the JPEG
// Python passed in, timers this harness fires) and records every fetch response and console.log.
// Commands come one JSON line at a time on stdin ({"op": ..., ...}); each is answered with one JSON
// line on stdout: {"op", "records": [...], "error"?}. Fetch responses are recorded as
// {kind: "response", method, route, status, contentType, body (base64)}; logs as {kind: "log", value}.

import.meta.env = { VITE_API_URL: process.env.VITE_API_URL };

let records = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init = {}) => {
  const response = await realFetch(url, init);
  const body = Buffer.from(await response.clone().arrayBuffer());
  records.push({
    kind: "response",
    method: init.method ?? "GET",
    route: new URL(url).pathname.split("/").pop(),
    status: response.status,
    contentType: response.headers.get("content-type"),
    body: body.toString("base64"),
  });
  return response;
};
console.log = (value) => records.push({ kind: "log", value });

// Timers: the snippet's setInterval is registered here and fired by the "poll" command (no waiting 3 s);
// a cleared one is kept, marked, so that "poll" with {cleared: true} can still run its body once.
const intervals = new Map();
let nextInterval = 1;
globalThis.setInterval = (fn, ms) => {
  intervals.set(nextInterval, { fn, ms, cleared: false });
  return nextInterval++;
};
globalThis.clearInterval = (id) => {
  if (intervals.has(id)) intervals.get(id).cleared = true;
};
const activeTimers = () => [...intervals.values()].filter((timer) => !timer.cleared);

// A canvas as the snippet uses it: toBlob(callback, type, quality) calls back with the encoded image.
const canvasOf = (bytes) => ({
  pending: [],
  asked: null,
  toBlob(callback, type, quality) {
    this.asked = { type, quality };
    this.pending.push(callback(new Blob([bytes], { type })));
  },
});

// @@SEED@@

const commands = {
  async upload({ jpeg }) {
    const canvas = canvasOf(Buffer.from(jpeg, "base64"));
    await uploadFrame(canvas);
    await Promise.all(canvas.pending);
    return { asked: canvas.asked };
  },
  async ply() {
    await downloadPLY();
  },
  async poll({ cleared }) {
    const timers = cleared ? [...intervals.values()] : activeTimers();
    for (const { fn } of timers) await fn();
    return { timers: timers.map(({ ms }) => ms) };
  },
  async stop() {
    await stopCapture();
    return { timers_left: activeTimers().length };
  },
  // The endpoint table's other two routes (the snippet has no code for them).
  async reset() {
    await fetch(`${API_URL}/reset`, { method: "POST" });
  },
  async health() {
    await fetch(`${API_URL}/health`);
  },
};

const lines = (await import("node:readline")).createInterface({ input: process.stdin });
for await (const line of lines) {
  const command = JSON.parse(line);
  records = [];
  const answer = { op: command.op };
  try {
    answer.result = (await commands[command.op](command)) ?? null;
  } catch (error) {
    answer.error = String(error?.stack ?? error);
  }
  answer.records = records;
  process.stdout.write(JSON.stringify(answer) + "\n");
}
