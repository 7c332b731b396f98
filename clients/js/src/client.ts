/** `createClient`: one object with every verb (uploads, jobs, sessions, tokens) over one credential. */
import { Transport, type Credential } from "./http.js";
import { Jobs } from "./jobs.js";
import {
  globalEventSource,
  globalWebSocket,
  globalXMLHttpRequest,
  inBrowser,
  type EventSourceConstructor,
  type WebSocketConstructor,
  type XMLHttpRequestConstructor,
} from "./runtime.js";
import { Sessions } from "./sessions.js";
import { BROWSER_KEY_MESSAGE, BrowserKeyError, Tokens } from "./tokens.js";
import { Uploads } from "./uploads.js";

export interface ClientOptions {
  /** The gateway's origin, e.g. `https://gpurelay.example` (the one origin clients see). */
  baseUrl: string;
  /** A short-lived scoped token (what a browser holds), or a function giving a fresh one. */
  token?: Credential;
  /** An API key: servers only (refused in a browser). */
  apiKey?: string;
  /** Default: the platform's fetch. */
  fetch?: typeof fetch;
  /** Default: the platform's WebSocket (browsers, Node ≥ 22); in Node 20 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** Default: the platform's EventSource (browsers); in Node pass the `eventsource` package's. */
  EventSource?: EventSourceConstructor;
  /** Default: the platform's (browsers), which gives upload progress; `null`: always fetch. */
  XMLHttpRequest?: XMLHttpRequestConstructor | null;
  /** Retries of a 429 or 503 answer (after its Retry-After) and of an unanswered GET. Default 3. */
  maxRetries?: number;
  /** The longest wait before a retry, whatever Retry-After asks. Default 30 000 ms. */
  maxRetryDelayMs?: number;
  /** Each request's time limit. Default 60 000 ms. */
  timeoutMs?: number;
  /** Headers sent with every API request. */
  headers?: Record<string, string>;
}

export interface GpurelayClient {
  readonly uploads: Uploads;
  readonly jobs: Jobs;
  readonly sessions: Sessions;
  readonly tokens: Tokens;
  /** Any other route: `request("GET", "/v1/webhooks")`; JSON in and out, problem+json errors. */
  request<T = unknown>(method: string, path: string, options?: Parameters<Transport["request"]>[2]): Promise<T>;
}

/** A client of one gateway with one credential. Throws in a browser when given an API key. */
export function createClient(options: ClientOptions): GpurelayClient {
  if (options.apiKey !== undefined && inBrowser()) throw new BrowserKeyError(BROWSER_KEY_MESSAGE);
  if ((options.apiKey === undefined) === (options.token === undefined)) {
    throw new TypeError("createClient needs exactly one credential: {token} (browsers) or {apiKey} (servers).");
  }
  if (!/^https?:\/\//.test(options.baseUrl)) throw new TypeError(`baseUrl must be an http(s) URL, not ${JSON.stringify(options.baseUrl)}.`);
  const fetchImpl = options.fetch ?? globalThis.fetch?.bind(globalThis);
  if (!fetchImpl) throw new TypeError("No fetch here: pass one in createClient({fetch}).");
  const http = new Transport({
    baseUrl: options.baseUrl,
    credential: (options.apiKey ?? options.token) as Credential,
    fetch: fetchImpl,
    maxRetries: options.maxRetries ?? 3,
    maxRetryDelayMs: options.maxRetryDelayMs ?? 30_000,
    timeoutMs: options.timeoutMs ?? 60_000,
    headers: options.headers ?? {},
  });
  const XHR = options.XMLHttpRequest === null ? undefined : (options.XMLHttpRequest ?? globalXMLHttpRequest());
  return {
    uploads: new Uploads(http, XHR),
    jobs: new Jobs(http, options.EventSource ?? globalEventSource()),
    sessions: new Sessions(http, options.WebSocket ?? globalWebSocket()),
    tokens: new Tokens(http, options.apiKey !== undefined),
    request: (method, path, requestOptions) => http.request(method, path, requestOptions),
  };
}
