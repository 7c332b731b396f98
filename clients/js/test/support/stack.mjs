// `gpurelay dev` for the client's tests: started in a child process (its pid recorded; it and its
// own children die with this process, PR_SET_PDEATHSIG armed before exec), ready once it prints
// "gpurelay dev ready", its URL and key read from <data dir>/dev.env; stopped with SIGTERM, then
// SIGKILL past the grace.
import { spawn } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";
import { join } from "node:path";

export const READY_LINE = "gpurelay dev ready";
const START_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 20_000;
// Arm the parent-death signal, then become `gpurelay dev` (same pid).
const EXEC_DYING_WITH_PARENT =
  "import os, sys\n" +
  "from services.common.processes import die_with_parent\n" +
  "die_with_parent(int(sys.argv[1]))\n" +
  "os.execv(sys.argv[2], sys.argv[2:])\n";

/** Start the stack; `{pid, env, stop, logPath}` once it is ready. */
export async function startStack({ repo, dataDir, logPath, env }) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("GPURELAY_")));
  const child = spawn(
    join(repo, ".venv/bin/python"),
    ["-c", EXEC_DYING_WITH_PARENT, String(process.pid), join(repo, ".venv/bin/gpurelay"), "dev", "--data-dir", dataDir, "--port", "0"],
    { cwd: repo, env: { ...base, COLUMNS: "250", PYTHONPATH: repo, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const log = createWriteStream(logPath);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };
  const ready = new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`gpurelay dev was not ready within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    const watch = (chunk) => {
      log.write(chunk);
      if (seen !== null) {
        seen = (seen + chunk.toString()).slice(-4096);
        if (seen.includes(READY_LINE)) {
          seen = null;
          clearTimeout(timer);
          resolve();
        }
      }
    };
    child.stdout.on("data", watch);
    child.stderr.on("data", watch);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`gpurelay dev exited (${code ?? signal}) before it was ready; see ${logPath}`));
    });
  });
  try {
    await ready;
  } catch (error) {
    await stop();
    throw error;
  }
  const file = readFileSync(join(dataDir, "dev.env"), "utf8");
  const devEnv = Object.fromEntries(file.split("\n").filter(Boolean).map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]));
  return { pid: child.pid, env: devEnv, stop, logPath };
}
