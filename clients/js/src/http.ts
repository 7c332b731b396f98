/**
 * The client's HTTP side: the credential on every request, JSON in and out, problem+json errors,
 * and bounded retries of the answers that mean "not now" (429, 503) after their `Retry-After`.
 */
import { GpurelayError, retryAfterS } from "./errors.js";
import { anySignal, delay } from "./runtime.js";

/** A bearer credential: a string, or a function giving a fresh one (called again once after a 401). */
export type Credential = string | (() => string | Promise<string>);

export interface TransportOptions {
  baseUrl: string;
  credential: Credential;
  fetch: typeof fetch;
  /** Retries of a 429 or 503 (and of a request safe to repeat that got no answer); 0 turns them off. Default 3. */
  maxRetries: number;
  /** The longest wait before a retry, whatever `Retry-After` asks. Default 30 000 ms. */
  maxRetryDelayMs: number;
  /** Each request's time limit. Default 60 000 ms. */
  timeoutMs: number;
  headers: Record<string, string>;
}

export interface RequestOptions {
  json?: unknown;
  body?: BodyInit;
  headers?: Record<string, string>;
  query?: Record<string, string | number | boolean | undefined | null>;
  signal?: AbortSignal;
}

/** Answers that mean "not now", retried after their `Retry-After` or a backoff. */
export const RETRIED = new Set([429, 503]);
/** The first backoff, doubled at each retry, where an answer names no `Retry-After`. */
export const FIRST_BACKOFF_MS = 500;

export class Transport {
  constructor(readonly options: TransportOptions) {}

  /** An absolute URL for `path` (a path under the base URL, or a URL the gateway gave). */
  url(path: string, query?: RequestOptions["query"]): string {
    const url = /^https?:\/\//.test(path) ? new URL(path) : new URL(this.options.baseUrl.replace(/\/+$/, "") + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  /** The credential as it is now (a function credential is called). */
  async credential(refresh = false): Promise<string> {
    const credential = this.options.credential;
    if (typeof credential === "string") return credential;
    if (refresh || this.cached === undefined) {
      const asked = Promise.resolve().then(credential);
      asked.catch(() => (this.cached = undefined)); // a failed ask is asked again next time
      this.cached = asked;
    }
    return this.cached;
  }

  private cached: Promise<string> | undefined;

  /** One call: the parsed JSON of a 2xx answer (null when it has no body), else a {@link GpurelayError}. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.send(method, path, options);
    const type = response.headers.get("content-type") ?? "";
    if (response.status === 204 || !type.includes("json")) return null as T;
    return (await response.json()) as T;
  }

  /** The 2xx response of a call, after bounded retries; a {@link GpurelayError} otherwise. */
  async send(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const url = this.url(path, options.query);
    const { maxRetries, maxRetryDelayMs } = this.options;
    let refreshed = false;
    for (let attempt = 0; ; attempt += 1) {
      let response: Response;
      try {
        response = await this.once(method, url, options, refreshed);
      } catch (cause) {
        if (options.signal?.aborted || !safeToRepeat(method, options) || attempt >= maxRetries) {
          throw GpurelayError.unreachable(url, cause);
        }
        await delay(Math.min(FIRST_BACKOFF_MS * 2 ** attempt, maxRetryDelayMs), options.signal);
        continue;
      }
      if (response.ok) return response;
      if (response.status === 401 && typeof this.options.credential === "function" && !refreshed) {
        refreshed = true; // a short-lived token ran out: ask for a fresh one, once
        attempt -= 1;
        continue;
      }
      if (RETRIED.has(response.status) && attempt < maxRetries) {
        const asked = retryAfterS(response.headers.get("retry-after"));
        const waitMs = asked !== undefined ? asked * 1000 : FIRST_BACKOFF_MS * 2 ** attempt;
        await response.body?.cancel().catch(() => undefined);
        await delay(Math.min(waitMs, maxRetryDelayMs), options.signal);
        continue;
      }
      throw await GpurelayError.fromResponse(response);
    }
  }

  private async once(method: string, url: string, options: RequestOptions, refresh: boolean): Promise<Response> {
    const headers: Record<string, string> = {
      accept: "application/json, application/problem+json",
      ...this.options.headers,
      ...options.headers,
      authorization: `Bearer ${await this.credential(refresh)}`,
    };
    let body = options.body;
    if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const signal = options.signal ? anySignal([options.signal, timeout]) : timeout;
    return this.options.fetch(url, { method, headers, body: body ?? null, signal, credentials: "omit" });
  }
}

/** Whether a request that got no answer may be sent again: it reads, or repeating it changes nothing
 * (PUT, DELETE, or a POST that carries an `Idempotency-Key`: the server makes one job of both). */
function safeToRepeat(method: string, options: RequestOptions): boolean {
  if (["GET", "HEAD", "PUT", "DELETE"].includes(method)) return true;
  return Object.keys(options.headers ?? {}).some((name) => name.toLowerCase() === "idempotency-key");
}
