/** A live session's socket messages as the client sees them: acks, frame descriptions, its events. */
import type { SessionError } from "./errors.js";
import type { JobEvent } from "./events.js";
import { randomKey } from "./runtime.js";

/** A frame's acknowledgement: its `seq` (from 1) and capture time. */
export interface Ack {
  seq: number;
  ts: number;
}

export interface FrameOptions {
  /** Capture time, UNIX seconds. */
  ts?: number;
  /** 4 × 4 camera-to-world, row-major (16 numbers): a splat session's pose for this frame. */
  pose?: number[];
  /** The frame's idempotency key (1-255 printable ASCII; default: a fresh one per call): the frame sent again
   * with it, on this socket or another, within FRAMES' duplicate window (2 min), is acked with the seq it was
   * stored as. */
  key?: string;
}

/** A frame's idempotency key as the gateway takes it. */
const FRAME_KEY = /^[ -~]{1,255}$/;

export interface SessionEvents {
  ack: Ack;
  /** Every event of the session. */
  event: JobEvent;
  progress: JobEvent;
  result: JobEvent;
  snapshot: JobEvent;
  alert: JobEvent;
  /** `session.ready`: an attempt's worker is ready (the session is live); `data.attempt`, `data.load_s`. */
  ready: JobEvent;
  /** `session.resumed`: a new attempt went on after a lost worker (`data.from_seq`, `frames_replayed`, `gap_s`). */
  resumed: JobEvent;
  control: { action: "stop" | "reset" };
  /** An error of the socket that no pending call took (those reject instead). */
  error: SessionError;
  /** The terminal event (job.succeeded, job.failed or job.canceled); the socket then closes. */
  end: JobEvent;
  /** The socket dropped; it is being opened again (calls made meanwhile wait for it). */
  disconnect: { code: number; reason: string };
  /** The socket is open again, resuming after the last event seen. */
  reconnect: { after: number };
  /** The socket closed for good (ended, closed by you, or refused). */
  close: { code: number; reason: string };
}

export interface SessionOptions {
  /** Drops in a row before giving up. Default 10. */
  maxReconnects?: number;
  /**
   * A socket that hears nothing for half this long is sent a ping (the gateway answers a pong); one that
   * hears nothing for all of it is taken as dropped and opened again. Default 30000; 0 never.
   */
  idleTimeoutMs?: number;
}

/** Which {@link SessionEvents} name each event type is also given under. */
export const ROUTED: Record<string, keyof SessionEvents> = {
  "job.progress": "progress",
  "session.result": "result",
  "session.snapshot": "snapshot",
  "session.alert": "alert",
  "session.ready": "ready",
  "session.resumed": "resumed",
};

/** The frame's description sent just before it, checked here as the gateway would; its key is `options.key`, else a
 * fresh one. */
export function frameMeta(options: FrameOptions): { type: "frame"; ts?: number; pose?: number[]; key: string } {
  const { ts, pose } = options;
  const key = options.key ?? `gpurelay-js-${randomKey()}`;
  if (ts !== undefined && !(Number.isFinite(ts) && ts >= 0 && ts <= 1e11)) {
    throw new TypeError("ts: a capture time in UNIX seconds (0 to 1e11).");
  }
  if (pose !== undefined && !(pose.length === 16 && pose.every((v) => Number.isFinite(v)))) {
    throw new TypeError("pose: 16 finite numbers (a 4 × 4 camera-to-world matrix, row-major).");
  }
  if (!FRAME_KEY.test(key)) throw new TypeError("key: 1-255 printable ASCII characters.");
  return { type: "frame", ...(ts === undefined ? {} : { ts }), ...(pose === undefined ? {} : { pose }), key };
}

type Listener = (value: never) => void;

/** The listeners of a session's {@link SessionEvents}. */
export class Emitter {
  private readonly listeners = new Map<keyof SessionEvents, Set<Listener>>();

  on<K extends keyof SessionEvents>(type: K, listener: (value: SessionEvents[K]) => void): () => void {
    const set = this.listeners.get(type) ?? new Set();
    set.add(listener as Listener);
    this.listeners.set(type, set);
    return () => set.delete(listener as Listener);
  }

  emit<K extends keyof SessionEvents>(type: K, value: SessionEvents[K]): void {
    for (const listener of [...(this.listeners.get(type) ?? [])]) (listener as (v: SessionEvents[K]) => void)(value);
  }
}
