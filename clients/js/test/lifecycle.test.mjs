// A session's worker getting ready and a lost worker's session going on, as the client shows them: the
// `ready` and `resumed` session events (the echo workload, its pid in <marks>/{id}.a{attempt}.{pid}).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { nodeClient, stack } from "./support/helpers.mjs";

const client = nodeClient();
const frame = (k) => new Uint8Array(readFileSync(join(stack.media, `frame-${k}.jpg`)));

/** Resolves with the first value of session event `type` that `when` accepts. */
function next(session, type, when = () => true) {
  return new Promise((resolve) => {
    const off = session.on(type, (value) => {
      if (when(value)) {
        off();
        resolve(value);
      }
    });
  });
}

test("ready says the worker is live; a killed worker's session resumes and says so", async () => {
  const session = await client.sessions.start({ kind: "splat", params: {} });
  const firstReady = next(session, "ready");
  const snapshot = next(session, "snapshot");
  await session.sendFrame(frame(1));
  await session.sendFrame(frame(2));
  assert.deepEqual([(await firstReady).data.attempt, (await firstReady).data.resumable], [1, true]);
  await snapshot; // frames 1 and 2 echoed and snapshotted
  const resumed = next(session, "resumed");
  const secondReady = next(session, "ready", (e) => e.data.attempt === 2);
  const third = next(session, "result", (e) => e.data.first_seq === 3);
  const mark = readdirSync(stack.marks).find((name) => name.startsWith(`${session.id}.a1.`));
  process.kill(Number(readFileSync(join(stack.marks, mark), "utf8")), "SIGKILL");
  assert.equal((await session.sendFrame(frame(3))).seq, 3); // stored while no worker runs
  const event = await resumed;
  assert.deepEqual([event.type, event.data.attempt, event.data.from_seq, event.data.frames_lost], ["session.resumed", 2, 2, 0]);
  assert.equal((await secondReady).type, "session.ready");
  await third;
  await session.stop();
  const record = await session.finished();
  assert.deepEqual([record.status, record.attempt, record.resumes], ["succeeded", 2, 1]);
  assert.deepEqual(record.result.seqs, [1, 2, 3]);
});
