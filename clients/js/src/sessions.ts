/**
 * Live sessions (`splat`, `vlm`): create one, or create it and open its socket
 * ({@link LiveSession}), or open the socket of one that exists.
 */
import type { Transport } from "./http.js";
import { LiveSession } from "./live_session.js";
import type { SessionOptions } from "./socket_messages.js";
import { randomKey, type Sent, type WebSocketConstructor } from "./runtime.js";
import type { components } from "./schema.js";

export type Session = Sent<components["schemas"]["SessionOut"]>;
export type SessionKind = "splat" | "vlm";
export type SplatParams = components["schemas"]["SplatParams"];
export type VlmParams = components["schemas"]["VlmParams"];

export type StartSession = (
  | { kind: "splat"; params?: Partial<SplatParams> }
  | { kind: "vlm"; params?: Partial<VlmParams> }
) & {
  /** The robot whose joint angles the session sees (default: one of its own, named by its id). */
  robotId?: string;
  webhook?: components["schemas"]["WebhookTarget"];
  idempotencyKey?: string;
};

export class Sessions {
  constructor(
    private readonly http: Transport,
    private readonly WS: WebSocketConstructor | undefined,
  ) {}

  /** Create a session (its record and URLs) without opening its socket. */
  create(start: StartSession, options: { signal?: AbortSignal } = {}): Promise<Session> {
    const { robotId, idempotencyKey, webhook, ...spec } = start;
    const body = { ...spec, params: spec.params ?? {}, robot_id: robotId, webhook };
    return this.http.request<Session>("POST", "/v1/sessions", {
      json: body,
      headers: { "idempotency-key": idempotencyKey ?? randomKey() },
      signal: options.signal,
    });
  }

  /** Create a session and open its socket: frames in, acks and events out. */
  async start(start: StartSession, options: SessionOptions = {}): Promise<LiveSession> {
    const socket = this.socket();
    return this.attach(await this.create(start), socket, options);
  }

  /** Open the socket of an existing session (after a page reload, say); `after`: the last event seq seen. */
  async connect(id: string, options: SessionOptions & { after?: number } = {}): Promise<LiveSession> {
    const socket = this.socket();
    return this.attach(await this.get(id), socket, options);
  }

  get(id: string, options: { signal?: AbortSignal } = {}): Promise<Session> {
    return this.http.request<Session>("GET", `/v1/sessions/${encodeURIComponent(id)}`, options);
  }

  private socket(): WebSocketConstructor {
    if (!this.WS) {
      throw new TypeError("No WebSocket here: pass one in createClient({WebSocket}) (Node 20: the 'ws' package).");
    }
    return this.WS;
  }

  private async attach(record: Session, WS: WebSocketConstructor, options: SessionOptions & { after?: number }): Promise<LiveSession> {
    const live = new LiveSession(record, this.http, WS, options);
    await live.opened();
    setTimeout(() => live.release(), 0); // after the caller's listeners, added once this resolves
    return live;
  }
}
