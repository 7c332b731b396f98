/** Jobs: submit (idempotent), read, list, cancel, follow live, wait for the end. */
import { follow, type JobEvent, type SubscribeOptions } from "./events.js";
import type { Transport } from "./http.js";
import { anySignal, randomKey, type EventSourceConstructor, type Sent } from "./runtime.js";
import type { components, paths } from "./schema.js";
import { settle } from "./settle.js";

export type Job = Sent<components["schemas"]["JobOut"]>;
export type JobList = Sent<components["schemas"]["JobList"]>;
export type JobKind = components["schemas"]["JobKind"];
export type JobStatus = components["schemas"]["JobStatus"];
/** What `POST /v1/jobs` takes: `{kind, inputs, params, webhook?, priority?, delay_s?, run_at?, ...}`. */
export type JobSpec = paths["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"];
export type CreateJob = JobSpec & {
  /** Retry-safe submission: the same key and body give the same job for 24 h (default: a fresh key). */
  idempotencyKey?: string;
};
export type ListJobs = NonNullable<paths["/v1/jobs"]["get"]["parameters"]["query"]>;

export interface WaitOptions {
  /** Give up (a rejection) after this long. Default: no limit. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Each event while waiting. */
  onEvent?: (event: JobEvent) => void;
}


export class Jobs {
  constructor(
    private readonly http: Transport,
    private readonly EventSourceImpl: EventSourceConstructor | undefined,
  ) {}

  /** Submit a job. An Idempotency-Key goes with it (yours, or a fresh one), so a retried submit is safe. */
  create(job: CreateJob, options: { signal?: AbortSignal } = {}): Promise<Job> {
    const { idempotencyKey, ...spec } = job;
    return this.http.request<Job>("POST", "/v1/jobs", {
      json: spec,
      headers: { "idempotency-key": idempotencyKey ?? randomKey() },
      signal: options.signal,
    });
  }

  get(id: string, options: { signal?: AbortSignal } = {}): Promise<Job> {
    return this.http.request<Job>("GET", `/v1/jobs/${encodeURIComponent(id)}`, options);
  }

  /** One page of this tenant's jobs, newest first; pass `next_cursor` as `cursor` for the next. */
  list(query: ListJobs = {}, options: { signal?: AbortSignal } = {}): Promise<JobList> {
    return this.http.request<JobList>("GET", "/v1/jobs", { query, signal: options.signal });
  }

  /** Every job matching `query`, page after page. */
  async *iterate(query: ListJobs = {}): AsyncGenerator<Job> {
    let cursor: string | null | undefined = query.cursor;
    do {
      const page = await this.list({ ...query, cursor });
      yield* page.items;
      cursor = page.next_cursor;
    } while (cursor);
  }

  /** Ask for cancellation (safe to repeat); the job ends `canceled` (a 409 once it has ended). */
  cancel(id: string, options: { signal?: AbortSignal } = {}): Promise<Job> {
    return this.http.request<Job>("POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`, options);
  }

  /**
   * Follow a job's events live until its terminal event (resuming after drops). Returns the
   * function that stops following.
   */
  subscribe(id: string, onEvent: (event: JobEvent) => void, options: SubscribeOptions = {}): () => void {
    return follow(this.EventSourceImpl, async () => (await this.get(id)).urls.events, onEvent, options);
  }

  /** The job's record once it has ended (succeeded, failed or canceled). */
  wait(id: string, options: WaitOptions = {}): Promise<Job> {
    const limits = [options.signal, options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs)];
    const present = limits.filter((s): s is AbortSignal => s !== undefined);
    const signal = present.length ? anySignal(present) : undefined;
    if (!this.EventSourceImpl) return settle(() => this.get(id, { signal }), signal); // no EventSource here: read the record until it ends
    return new Promise<Job>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const unsubscribe = this.subscribe(id, (event) => options.onEvent?.(event), {
        onEnd: () => settle(() => this.get(id, { signal }), signal).then(resolve, reject),
        onError: reject,
      });
      signal?.addEventListener("abort", () => (unsubscribe(), reject(signal.reason)), { once: true });
    });
  }
}

