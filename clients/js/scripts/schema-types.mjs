// The API's types, generated from docs/openapi.json by openapi-typescript into src/schema.ts.
// `node scripts/schema-types.mjs` writes it; with `--check` it regenerates into a temporary file and
// fails (exit 1) when that differs from the committed src/schema.ts, naming the command that fixes it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const spec = resolve(root, "../../docs/openapi.json");
const committed = join(root, "src/schema.ts");
const bin = join(root, "node_modules/.bin/openapi-typescript");
// Fields with a default are optional in what a client sends (priority, params, ...).
const FLAGS = ["--default-non-nullable", "false"];

function generate(out) {
  const run = spawnSync(bin, [spec, "-o", out, ...FLAGS], { encoding: "utf8" });
  if (run.error) {
    process.stderr.write(`${bin} did not run (${run.error.message}): run \`npm ci\` first.\n`);
    process.exit(1);
  }
  if (run.status !== 0) {
    process.stderr.write(run.stdout + run.stderr);
    process.exit(run.status ?? 1);
  }
}

if (process.argv.includes("--check")) {
  const dir = mkdtempSync(join(tmpdir(), "gpurelay-schema-"));
  try {
    const fresh = join(dir, "schema.ts");
    generate(fresh);
    if (readFileSync(fresh, "utf8") !== readFileSync(committed, "utf8")) {
      const diff = spawnSync("diff", ["-u", committed, fresh], { encoding: "utf8" });
      process.stderr.write(diff.stdout.split("\n").slice(0, 60).join("\n") + "\n");
      process.stderr.write("src/schema.ts is stale against docs/openapi.json: run `npm run generate:types`.\n");
      process.exit(1);
    }
    console.log("src/schema.ts matches docs/openapi.json");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  generate(committed);
}
