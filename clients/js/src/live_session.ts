/**
 * One live session's socket (`WS urls.stream`): frames in, each acked as soon as the gateway stored
 * it, and the session's events out (progress, results, snapshots, alerts, its end). The socket
 * authenticates with its first message, the session's own stream token (a browser cannot set
 * headers on a WebSocket). A dropped socket is opened again with `?after=<last event seq>`, so no
 * event is missed; calls made while it is down wait for it. Each frame carries an idempotency key, so
 * a frame in flight at the drop is sent again on the new socket, in order, and stored once (acked with
 * the seq it was stored as); a stop or reset in flight rejects. A socket that has been silent for half
 * of `idleTimeoutMs` is pinged, and one still silent at its end is taken as dropped: a host gone without
 * closing it sends no close, and a page would otherwise wait for ever.
 */
import { SessionError } from "./errors.js";
import { TERMINAL_EVENT_TYPES, type JobEvent } from "./events.js";
import type { Transport } from "./http.js";
import { delay, withQuery, type WebSocketConstructor } from "./runtime.js";
import type { Session } from "./sessions.js";
import { settle } from "./settle.js";
import { Emitter, frameMeta, ROUTED, type Ack, type FrameOptions, type SessionEvents, type SessionOptions } from "./socket_messages.js";

type Pending = { kind: "frame" | "stop" | "reset"; resolve: (value: never) => void; reject: (error: Error) => void };

/** Close codes after which opening the socket again cannot help. */
const REFUSED = new Set([1008, 4401, 4404, 4409]);
const BACKOFF_MS = [250, 500, 1000, 2000, 5000];
const SOCKET_OPEN = 1;
const IDLE_TIMEOUT_MS = 30_000;

/** At most this many messages are held while a session is being handed to its caller. */
const HELD_MAX = 10_000;

export class LiveSession {
  readonly id: string;
  readonly kind: string;
  private ws: WebSocket | undefined;
  private ready: Promise<void>;
  private held: unknown[] | null = [];
  private chain: Promise<unknown> = Promise.resolve();
  private readonly pending: Pending[] = [];
  private readonly listeners = new Emitter();
  private lastSeq = 0;
  private closing = false;
  private drops = 0;
  private idle: ReturnType<typeof setTimeout> | undefined;
  private endEvent: JobEvent | undefined;
  private readonly ended: Promise<JobEvent>;
  private settleEnd!: { resolve: (e: JobEvent) => void; reject: (e: Error) => void };

  constructor(
    private record: Session,
    private readonly http: Transport,
    private readonly WS: WebSocketConstructor,
    private readonly options: SessionOptions & { after?: number } = {},
  ) {
    this.id = record.id;
    this.kind = record.kind;
    this.lastSeq = options.after ?? 0;
    this.ended = new Promise((resolve, reject) => (this.settleEnd = { resolve, reject }));
    this.ended.catch(() => undefined); // read by finished(); not an unhandled rejection otherwise
    this.ready = this.connect();
    this.ready.catch(() => undefined);
  }

  /** The record as last read (at creation, or by {@link refresh}). */
  get session(): Session {
    return this.record;
  }

  /** Resolves once the socket is open (it is opened by `sessions.start`). */
  opened(): Promise<void> {
    return this.ready;
  }

  /** Listen to `type`; the returned function stops listening. */
  on<K extends keyof SessionEvents>(type: K, listener: (value: SessionEvents[K]) => void): () => void {
    return this.listeners.on(type, listener);
  }

  /** Send one JPEG or PNG frame; resolves with its ack (before any inference), rejects with a {@link SessionError}.
   * A socket that drops before the ack is opened again and the frame sent again under its key (`maxReconnects`
   * times at most), so it is stored once. */
  sendFrame(frame: Blob | ArrayBuffer | ArrayBufferView, options: FrameOptions = {}): Promise<Ack> {
    let meta: ReturnType<typeof frameMeta>;
    try {
      meta = frameMeta(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const resends = this.options.maxReconnects ?? 10;
    const attempt = (left: number): Promise<Ack> => {
      const sent = this.enqueue(async (ws) => {
        const bytes = frame instanceof Blob ? await frame.arrayBuffer() : frame;
        const ack = this.expect<Ack>("frame");
        ws.send(JSON.stringify(meta));
        ws.send(bytes as ArrayBuffer);
        return { ack };
      });
      return sent
        .then((s) => s.ack)
        .catch((error: unknown) => {
          const dropped = error instanceof SessionError && error.code === "disconnected";
          if (dropped && left > 0 && !this.closing && !this.endEvent) return attempt(left - 1);
          throw error;
        });
    };
    return attempt(resends);
  }

  /** Finish: the worker writes its final outputs and the session succeeds ({@link finished} gives the record);
   * resolves at once for a session that already ended. */
  stop(): Promise<void> {
    return this.control("stop");
  }

  /** Clear the worker's model and counters; the session goes on. */
  reset(): Promise<void> {
    return this.control("reset");
  }

  /** Cancel: the worker is stopped with no final outputs; the session ends `canceled`. */
  async cancel(): Promise<void> {
    await this.http.request("POST", this.record.urls.cancel);
  }

  /** Read the session's record again. */
  async refresh(): Promise<Session> {
    this.record = await this.http.request<Session>("GET", this.record.urls.self);
    return this.record;
  }

  /** The record once the session has ended (after its terminal event). */
  async finished(options: { signal?: AbortSignal } = {}): Promise<Session> {
    if (!this.endEvent) await this.ended;
    this.record = await settle(() => this.http.request<Session>("GET", this.record.urls.self, options), options.signal);
    return this.record;
  }

  /** Close the socket (the session goes on until it is stopped, or idle for `params.idle_timeout_s`). */
  close(): void {
    this.closing = true;
    clearTimeout(this.idle);
    this.ws?.close(1000);
    this.failPending(new SessionError("closed", "the socket was closed"));
  }

  private control(action: "stop" | "reset"): Promise<void> {
    if (action === "stop" && this.endEvent) return Promise.resolve(); // it ended: what a stop asks
    if (this.closing || this.endEvent) {
      return this.http.request<unknown>("POST", this.record.urls[action]).then(() => undefined);
    }
    const sent = this.enqueue(async (ws) => {
      const done = this.expect<void>(action);
      ws.send(JSON.stringify({ type: action }));
      return { done };
    });
    return sent.then((s) => s.done);
  }

  /** Run `send` after the sends before it, on an open socket (waiting for a reconnect if need be). */
  private enqueue<T>(send: (ws: WebSocket) => Promise<T>): Promise<T> {
    const run = this.chain.then(async () => {
      await this.ready;
      const ws = this.ws;
      if (!ws || ws.readyState !== SOCKET_OPEN || this.closing) throw new SessionError("closed", "the socket is closed");
      return send(ws);
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private expect<T>(kind: Pending["kind"]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ kind, resolve: resolve as (value: never) => void, reject });
    });
  }

  private emit<K extends keyof SessionEvents>(type: K, value: SessionEvents[K]): void {
    this.listeners.emit(type, value);
  }

  private async connect(): Promise<void> {
    for (;;) {
      try {
        await this.open();
        this.drops = 0;
        return;
      } catch (error) {
        if (this.closing || this.endEvent || !(error instanceof SessionError) || error.code === "refused") throw error;
        this.drops += 1;
        if (this.drops > (this.options.maxReconnects ?? 10)) throw error;
        await delay(BACKOFF_MS[Math.min(this.drops - 1, BACKOFF_MS.length - 1)]!);
      }
    }
  }

  /** Open one socket and authenticate it; rejects when it closes before it opened. */
  private async open(): Promise<void> {
    if (this.drops > 0) await this.refresh(); // a fresh stream token
    const token = new URL(this.record.urls.events).searchParams.get("token") ?? (await this.http.credential());
    // From the session's first event when none was seen (?after=1): without it the server starts at its
    // newest, and what the worker said before the socket subscribed (session.ready, say) never comes.
    const ws = new this.WS(withQuery(this.record.urls.stream, { after: this.lastSeq || 1 }));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => {
        opened = true;
        ws.send(JSON.stringify({ auth: token }));
        this.watch(ws);
        resolve();
      };
      ws.onmessage = (message: MessageEvent) => {
        this.watch(ws);
        this.onMessage(message.data);
      };
      ws.onerror = () => undefined; // a close follows, with its code
      ws.onclose = (e: CloseEvent) => {
        const refused = REFUSED.has(e.code);
        reject(new SessionError(refused ? "refused" : "disconnected", `the socket closed (${e.code}) ${e.reason}`.trim()));
        if (opened && this.ws === ws) this.onClose(e.code, e.reason, refused);
      };
    });
  }

  /** Heard from `ws`: ping it after half the idle timeout of silence, give it up after all of it. */
  private watch(ws: WebSocket): void {
    clearTimeout(this.idle);
    const limit = this.options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
    if (limit <= 0 || this.closing || this.endEvent) return;
    this.idle = setTimeout(() => {
      if (this.ws !== ws || ws.readyState !== SOCKET_OPEN) return;
      ws.send(JSON.stringify({ type: "ping" })); // answered with a pong
      this.idle = setTimeout(() => this.silent(ws, limit), limit - Math.floor(limit / 2));
    }, Math.floor(limit / 2));
  }

  /** `ws` answered nothing for `limit` ms: drop it (its close may never come) and open another. */
  private silent(ws: WebSocket, limit: number): void {
    if (this.ws !== ws) return;
    ws.onmessage = null;
    ws.onclose = null;
    try {
      ws.close();
    } catch {
      // closing a socket that is already going: nothing to do
    }
    this.onClose(1006, `nothing heard for ${limit} ms`, false);
  }

  private onClose(code: number, reason: string, refused: boolean): void {
    clearTimeout(this.idle);
    this.ws = undefined;
    const why = code === 1009 ? "frame_too_large" : "disconnected";
    this.failPending(new SessionError(why, `the socket closed (${code}) ${reason}`.trim()));
    if (this.closing || this.endEvent || refused) {
      if (!this.endEvent) this.settleEnd.reject(new SessionError(refused ? "refused" : "closed", `the socket closed (${code})`));
      this.emit("close", { code, reason });
      return;
    }
    this.drops += 1;
    this.ready = delay(BACKOFF_MS[Math.min(this.drops - 1, BACKOFF_MS.length - 1)]!).then(() => this.connect());
    this.ready.then(() => this.emit("reconnect", { after: this.lastSeq }));
    this.emit("disconnect", { code, reason });
    this.ready.catch((error: Error) => {
      this.settleEnd.reject(error);
      this.emit("close", { code, reason });
    });
  }

  private failPending(error: SessionError): void {
    for (const p of this.pending.splice(0)) p.reject(error);
  }

  /** @internal Hand on what came before the caller could listen (sessions.start resolves first). */
  release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const data of held) this.onMessage(data);
  }

  private onMessage(data: unknown): void {
    if (this.held) {
      // A session's first events (its socket replays them from the first) can come while start() is
      // still resolving: held, bounded, until the caller had a turn to add its listeners.
      if (this.held.length < HELD_MAX) this.held.push(data);
      return;
    }
    if (typeof data !== "string") return;
    let message: { type?: string; [key: string]: unknown };
    try {
      message = JSON.parse(data) as typeof message;
    } catch {
      return;
    }
    if (message.type === "ack" || message.type === "control") {
      const head = this.pending.shift();
      if (message.type === "ack") {
        const ack = { seq: Number(message.seq), ts: Number(message.ts) };
        head?.resolve(ack as never);
        this.emit("ack", ack);
      } else {
        head?.resolve(undefined as never);
        this.emit("control", { action: message.action as "stop" | "reset" });
      }
    } else if (message.type === "error") {
      const error = new SessionError(String(message.code), String(message.message));
      const head = this.pending.shift();
      if (head) head.reject(error);
      else this.emit("error", error);
    } else if (message.type === "event") {
      this.onEvent(Number(message.seq), message.event as JobEvent["envelope"]);
    }
  }

  private onEvent(seq: number, envelope: JobEvent["envelope"]): void {
    if (seq <= this.lastSeq) return;
    this.lastSeq = seq;
    const event: JobEvent = { seq, type: envelope.type, data: envelope.data ?? {}, envelope };
    this.emit("event", event);
    const routed = ROUTED[envelope.type];
    if (routed) this.emit(routed, event as never);
    if (TERMINAL_EVENT_TYPES.has(envelope.type)) {
      this.endEvent = event;
      // A stop is done once the session has ended, even when its reply lost the race to the end.
      for (const p of this.pending.filter((p) => p.kind === "stop")) p.resolve(undefined as never);
      this.pending.splice(0, this.pending.length, ...this.pending.filter((p) => p.kind !== "stop"));
      this.settleEnd.resolve(event);
      this.emit("end", event);
    }
  }
}
