/** What the client needs from its platform (fetch, WebSocket, EventSource, XMLHttpRequest), found or injected. */

/** The WebSocket the client uses: the browser's, Node 22's global one, or `ws`'s (same API). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocket;
/** The EventSource the client uses: the browser's, or the `eventsource` package's in Node. */
export type EventSourceConstructor = new (url: string) => EventSource;
export type XMLHttpRequestConstructor = new () => XMLHttpRequest;

type Globals = {
  window?: unknown;
  importScripts?: unknown;
  WebSocket?: WebSocketConstructor;
  EventSource?: EventSourceConstructor;
  XMLHttpRequest?: XMLHttpRequestConstructor;
};

const globals = globalThis as unknown as Globals;

/** Whether this code runs in a browser page or a web worker (where an API key must never be). */
export function inBrowser(): boolean {
  return typeof globals.window !== "undefined" || typeof globals.importScripts === "function";
}

export function globalWebSocket(): WebSocketConstructor | undefined {
  return globals.WebSocket;
}

export function globalEventSource(): EventSourceConstructor | undefined {
  return globals.EventSource;
}

export function globalXMLHttpRequest(): XMLHttpRequestConstructor | undefined {
  return globals.XMLHttpRequest;
}

/** A random UUID (v4) for an Idempotency-Key; `crypto.randomUUID` is missing outside secure contexts. */
export function randomKey(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Resolve after `ms`, or reject at once when `signal` aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, ms);
    function done(): void {
      signal?.removeEventListener("abort", abort);
      resolve();
    }
    function abort(): void {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener("abort", abort, { once: true });
  });
}

/** `url` with `params` added to its query (undefined values left out). */
export function withQuery(url: string, params: Record<string, string | number | undefined | null>): string {
  const parsed = new URL(url);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) parsed.searchParams.set(key, String(value));
  }
  return parsed.toString();
}

/** An AbortSignal that aborts when any of `signals` does (AbortSignal.any is missing before Node 20.3). */
export function anySignal(signals: AbortSignal[]): AbortSignal {
  const any = (AbortSignal as unknown as { any?: (s: AbortSignal[]) => AbortSignal }).any;
  if (any) return any.call(AbortSignal, signals);
  const controller = new AbortController();
  for (const s of signals) {
    if (s.aborted) controller.abort(s.reason);
    else s.addEventListener("abort", () => controller.abort(s.reason), { once: true });
  }
  return controller.signal;
}

/**
 * A record as the gateway sends it: every field is there (it writes defaults and nulls), so what the
 * generated types mark optional for requests (a field with a default) is required in an answer.
 */
export type Sent<T> = T extends readonly unknown[]
  ? { [K in keyof T]: Sent<T[K]> }
  : T extends object
    ? { [K in keyof T]-?: Sent<T[K]> }
    : T;
