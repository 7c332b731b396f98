// A static origin for the browser tests (another origin than the gateway's, as an app's would be):
// the built client (dist/) and the test pages (test/browser/), nothing else.
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";

const TYPES = { ".js": "text/javascript", ".html": "text/html", ".map": "application/json" };
const SERVED = ["dist/", "test/browser/"];

export async function startStatic(root) {
  const server = createServer(async (request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname)).replace(/^\/+/, "");
    if (!SERVED.some((prefix) => path.startsWith(prefix))) return void response.writeHead(404).end();
    try {
      const body = await readFile(join(root, path));
      response.writeHead(200, { "content-type": TYPES[extname(path)] ?? "application/octet-stream" }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { origin, close: () => new Promise((resolve) => server.close(resolve)) };
}
