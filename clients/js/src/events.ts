/**
 * A job's (or a session's) live events over Server-Sent Events, in a browser or in Node.
 *
 * The stream URL is the one the record gives (`urls.events`, with a short-lived stream token as
 * `?token=`, since an EventSource cannot send headers). After a drop the client closes the
 * EventSource and opens a fresh one itself, with a fresh token and `?after=<last event id>`, so
 * nothing is missed or repeated; it stops at the terminal event. The stream is asked for its
 * keep-alive as a `ping` event (`?ping=event`: an EventSource hides the default comment), so a
 * connection that went silent (a host that died without closing it, a network that drops what the
 * server sends) is told from a quiet job and resumed after `idleTimeoutMs`.
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
  /**
   * A stream with neither an event nor a keep-alive for this long is taken as cut and resumed.
   * Default 60000 (the server's keep-alive comes every 15 s); 0 never.
   */
  idleTimeoutMs?: number;
}

/** Where a stream's URL comes from: read the record again for a fresh stream token. */
export type StreamUrl = () => Promise<string>;

const BACKOFF_MS = [250, 500, 1000, 2000, 5000];
const IDLE_TIMEOUT_MS = 60_000;

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
  const idleTimeoutMs = options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
  let after = options.after ?? 0;
  let stopped = false;
  let drops = 0;
  let source: EventSource | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let idle: ReturnType<typeof setTimeout> | undefined;

  const stop = (): void => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(idle);
    source?.close();
  };
  const fail = (error: GpurelayError): void => {
    if (stopped) return;
    stop();
    options.onError?.(error);
  };
  const lost = (): void => {
    // A drop, a refusal or a silent connection: either way this source is done; a fresh one resumes after `after`.
    clearTimeout(idle);
    source?.close();
    reconnect();
  };
  const alive = (): void => {
    clearTimeout(idle);
    if (idleTimeoutMs > 0 && !stopped) idle = setTimeout(lost, idleTimeoutMs);
  };
  const onMessage = (message: MessageEvent<string>): void => {
    if (stopped) return;
    alive();
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
    source = new Source(withQuery(url, { after: after || undefined, ping: "event" }));
    for (const type of JOB_EVENT_TYPES) source.addEventListener(type, onMessage as EventListener);
    source.addEventListener("ping", alive);
    source.onerror = lost;
    alive();
  };
  void open();
  return stop;
}

function dropped(detail: string): Problem {
  return { type: "about:blank", status: 0, title: "Stream lost", detail };
}
