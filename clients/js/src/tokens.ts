/**
 * Short-lived scoped tokens, minted by your server (which holds the API key) for a browser, which
 * then calls gpurelay directly with `createClient({baseUrl, token})`. Never in a browser: there an
 * API key must not exist, so this refuses to run.
 */
import type { Transport } from "./http.js";
import { inBrowser, type Sent } from "./runtime.js";
import type { components } from "./schema.js";

/** A scope of a token (`docs/api.md` lists the routes each opens). */
export type Scope = components["schemas"]["Scope"];

export interface CreateToken {
  /** What the token may do, e.g. `["jobs:write", "uploads:write", "sessions:write"]`. */
  scopes: Scope[];
  /** Only these job kinds (default: any). */
  kinds?: components["schemas"]["JobKind"][];
  /** Your end user's id, recorded with what the token does. */
  subject?: string;
  /** The one robot whose sessions and joints the token reaches. */
  robotId?: string;
  /** Lifetime in seconds (default: the gateway's, 900). */
  ttlS?: number;
}

/** A minted token and what it may do (`POST /v1/tokens`' answer). */
export type Token = Sent<components["schemas"]["TokenOut"]>;

export class BrowserKeyError extends Error {
  override readonly name = "BrowserKeyError";
}

export const BROWSER_KEY_MESSAGE =
  "An API key must never reach a browser: anyone can read it there. Keep it on your server, mint a " +
  "short-lived token with client.tokens.create({scopes}) there, and pass it to the browser's " +
  "createClient({baseUrl, token}).";

export class Tokens {
  constructor(
    private readonly http: Transport,
    private readonly hasApiKey: boolean,
  ) {}

  /** Mint a scoped token (`POST /v1/tokens`): server side, with an API key. */
  create(request: CreateToken, options: { signal?: AbortSignal } = {}): Promise<Token> {
    if (inBrowser()) return Promise.reject(new BrowserKeyError(BROWSER_KEY_MESSAGE));
    if (!this.hasApiKey) {
      return Promise.reject(new TypeError("tokens.create needs an API key: createClient({baseUrl, apiKey}) on your server."));
    }
    const body = {
      scopes: request.scopes,
      ...(request.kinds === undefined ? {} : { kinds: request.kinds }),
      ...(request.subject === undefined ? {} : { subject: request.subject }),
      ...(request.robotId === undefined ? {} : { robot_id: request.robotId }),
      ...(request.ttlS === undefined ? {} : { ttl_s: request.ttlS }),
    };
    return this.http.request<Token>("POST", "/v1/tokens", { json: body, signal: options.signal });
  }
}
