// `npm test`: one embedded stack for every test file, then `node --test`, then the stack stops
// (also on a failure, Ctrl-C or SIGTERM). The stack's route table sends `pose` to a short test
// workload (`held`: it logs a step every 0.1 s until the test writes `<marks>/go`) and the session kinds to the echo workload (a lost worker's session tried once more: it resumes); `lap_compare` is the real one.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startStatic } from "./support/static.mjs";
import { startStack } from "./support/stack.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../../..");
const ROUTES = `
profiles:
  dev:
    lap_compare:
      backend: local
      local: modal_workers.lap_compare:run
      function: lap_compare
      gpus: []
      timeout_s: 120
      retries: {max_attempts: 1}
      concurrency: 2
    pose:
      backend: local
      local: bench.harness.fault_workloads:held
      function: pose
      gpus: []
      timeout_s: 60
      retries: {max_attempts: 1}
      concurrency: 2
    splat: &echo
      backend: local
      local: bench.harness.session_echo:run
      function: splat
      timeout_s: 120
      retries: {max_attempts: 2, backoff_initial_s: 0.2}
      concurrency: 4
    vlm: *echo
  prod: {}
`;

const work = mkdtempSync(join(tmpdir(), "gpurelay-client-js-"));
const devLog = join(work, "gpurelay-dev.log");
let stack;
let site;
let tests;
const cleanUp = async () => {
  tests?.kill("SIGTERM");
  await stack?.stop();
  await site?.close();
};
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => cleanUp().finally(() => process.exit(130)));
}

let code = 1;
try {
  const media = join(work, "media");
  const made = spawnSync(join(repo, ".venv/bin/python"), ["clients/js/test/support/fixtures.py", "media", media], {
    cwd: repo,
    env: { ...process.env, PYTHONPATH: repo },
    encoding: "utf8",
  });
  if (made.status !== 0) throw new Error(`could not draw the test media: ${made.stderr}`);
  writeFileSync(join(work, "routes.yaml"), ROUTES);
  const marks = join(work, "marks");
  mkdirSync(marks);
  site = await startStatic(resolve(here, ".."));
  stack = await startStack({
    repo,
    dataDir: join(work, "data"),
    logPath: devLog,
    env: {
      GPURELAY_ROUTE_TABLE: join(work, "routes.yaml"),
      GPURELAY_SSE_HEARTBEAT_S: "1", // the streams' keep-alive, which the client's idle timeout counts on
      GPURELAY_CORS_ORIGINS: JSON.stringify([site.origin]),
      GPURELAY_TEST_MARKS: marks,
    },
  });
  const files = readdirSync(here).filter((f) => f.endsWith(".test.mjs")).sort().map((f) => join(here, f));
  const only = process.argv.slice(2);
  tests = spawn(process.execPath, ["--test", "--test-timeout=120000", ...(only.length ? only : files)], {
    stdio: "inherit",
    env: {
      ...process.env,
      GPURELAY_TEST_URL: stack.env.GPURELAY_URL,
      GPURELAY_TEST_API_KEY: stack.env.GPURELAY_API_KEY,
      GPURELAY_TEST_NATS_URL: stack.env.GPURELAY_NATS_URL,
      // The operator's NATS user (dev.env's), with which test/support/fixtures.py writes quotas and keys.
      GPURELAY_TEST_NATS_USER: stack.env.GPURELAY_NATS_USER ?? "",
      GPURELAY_TEST_NATS_PASSWORD: stack.env.GPURELAY_NATS_PASSWORD ?? "",
      GPURELAY_TEST_MEDIA: media,
      GPURELAY_TEST_MARKS: marks,
      GPURELAY_TEST_ORIGIN: site.origin,
      GPURELAY_TEST_REPO: repo,
      GPURELAY_TEST_RUNNER_PID: String(process.pid),
    },
  });
  code = await new Promise((resolveCode) => tests.once("exit", (c, s) => resolveCode(c ?? (s ? 1 : 0))));
  tests = undefined;
} catch (error) {
  console.error(error);
} finally {
  await cleanUp();
  if (code !== 0 && existsSync(devLog)) {
    // also when the stack never got ready: its log goes with the work directory below
    const log = readFileSync(devLog, "utf8").split("\n").slice(-40).join("\n");
    console.error(`--- the last lines of gpurelay dev's log ---\n${log}`);
  }
  rmSync(work, { recursive: true, force: true });
}
process.exit(code);
