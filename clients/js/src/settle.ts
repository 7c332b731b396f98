/** Reading a record until it shows its end: the record is written a moment after the terminal event. */
import { delay } from "./runtime.js";

const TERMINAL_STATUSES: ReadonlySet<string> = new Set(["succeeded", "failed", "canceled"]);
const WAITS_MS = [100, 200, 400, 800, 1000];

/** `read()` again (100 ms, then up to 1 s apart) until its `status` is terminal. */
export async function settle<T extends { status: string }>(read: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let i = 0; ; i += 1) {
    const record = await read();
    if (TERMINAL_STATUSES.has(record.status)) return record;
    await delay(WAITS_MS[Math.min(i, WAITS_MS.length - 1)]!, signal);
  }
}
