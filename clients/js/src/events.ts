/**
 * A job's (or a session's) live events over Server-Sent Events, in a browser or in Node.
 *
 * The stream URL is the one the record gives (`urls.events`, with a short-lived stream token as
 * `?token=`, since an EventSource cannot send headers). After a drop the client closes the
 * EventSource and opens a fresh one itself, with a fresh token and `?after=<last event id>`, so
 * nothing is missed or repeated; it stops at the terminal event.
 */
import { GpurelayError, type Problem } from "./errors.js";
import { withQuery, type EventSourceConstructor, type Sent } from "./runtime.js";
import type { components } from "./schema.js";

export type EventEnvelope = Sent<components["schemas"]["EventEnvelope"]>;

/** Every type a job's stream carries: the `job.*` and `session.*` events (docs/asyncapi.json). */
export const JOB_EVENT_TYPES = [
  "job.created",
  "job.queued",
  "job.position",
  "job.dispatched",
  "job.started",
  "job.progress",
  "job.log",
  "job.artifact",
  "job.heartbeat",
  "job.stage",
  "job.retrying",
  "job.cancel_requested",
  "job.succeeded",
  "job.failed",
  "job.canceled",
  "session.stop_requested",
  "session.snapshot",
  "session.result",
  "session.alert",
  "session.ready",
  "session.resumed",
] as const;

export const TERMINAL_EVENT_TYPES: ReadonlySet<string> = new Set(["job.succeeded", "job.failed", "job.canceled"]);

/** One event: its stream sequence (`seq`, null for a coalesced progress), type, payload and envelope. */
export interface JobEvent {
  seq: number | null;
  type: string;
  data: Record<string, unknown>;
  envelope: EventEnvelope;
}

export interface SubscribeOptions {
  /** Start after this stream sequence (an earlier event's `seq`); default: from the job's first event. */
  after?: number;
  /** Called once, after the terminal event. */
  onEnd?: (event: JobEvent) => void;
  /** Called once when the stream cannot go on (the job is gone, the credential refused, too many drops). */
  onError?: (error: GpurelayError) => void;
  /** Drops in a row (no event in between) before giving up. Default 10. */
  maxReconnects?: number;
}

/** Where a stream's URL comes from: read the record again for a fresh stream token. */
export type StreamUrl = () => Promise<string>;

const BACKOFF_MS = [250, 500, 1000, 2000, 5000];

/** Follow a stream until its terminal event; the returned function stops following. */
export function follow(
  EventSourceImpl: EventSourceConstructor | undefined,
  streamUrl: StreamUrl,
  onEvent: (event: JobEvent) => void,
  options: SubscribeOptions = {},
): () => void {
  if (!EventSourceImpl) {
    throw new TypeError("No EventSource here: pass one in createClient({EventSource}) (in Node, the 'eventsource' package).");
  }
  const Source = EventSourceImpl;
  const maxReconnects = options.maxReconnects ?? 10;
  let after = options.after ?? 0;
  let stopped = false;
  let drops = 0;
  let source: EventSource | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const stop = (): void => {
    stopped = true;
    clearTimeout(timer);
    source?.close();
  };
  const fail = (error: GpurelayError): void => {
    if (stopped) return;
    stop();
    options.onError?.(error);
  };
  const onMessage = (message: MessageEvent<string>): void => {
    if (stopped) return;
    drops = 0;
    const seq = /^\d+$/.test(message.lastEventId) ? Number(message.lastEventId) : null;
    if (seq !== null && seq <= after) return; // already delivered before a drop
    if (seq !== null) after = seq;
    let envelope: EventEnvelope;
    try {
      envelope = JSON.parse(message.data) as EventEnvelope;
    } catch {
      return;
    }
    const event: JobEvent = { seq, type: message.type, data: envelope.data ?? {}, envelope };
    onEvent(event);
    if (TERMINAL_EVENT_TYPES.has(message.type)) {
      stop();
      options.onEnd?.(event);
    }
  };
  const reconnect = (): void => {
    if (stopped) return;
    drops += 1;
    if (drops > maxReconnects) {
      fail(new GpurelayError(dropped(`the event stream dropped ${maxReconnects} times in a row`)));
      return;
    }
    timer = setTimeout(open, BACKOFF_MS[Math.min(drops - 1, BACKOFF_MS.length - 1)]);
  };
  const open = async (): Promise<void> => {
    let url: string;
    try {
      url = await streamUrl();
    } catch (error) {
      if (error instanceof GpurelayError && error.status !== 0 && error.status !== 429 && error.status < 500) fail(error);
      else reconnect();
      return;
    }
    if (stopped) return;
    source = new Source(withQuery(url, { after: after || undefined }));
    for (const type of JOB_EVENT_TYPES) source.addEventListener(type, onMessage as EventListener);
    source.onerror = () => {
      // A drop, or a refusal: either way this source is done; a fresh one resumes after `after`.
      source?.close();
      reconnect();
    };
  };
  void open();
  return stop;
}

function dropped(detail: string): Problem {
  return { type: "about:blank", status: 0, title: "Stream lost", detail };
}
