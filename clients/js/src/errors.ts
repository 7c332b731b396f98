/** Errors: the gateway's problem documents (RFC 9457) and the client's own refusals. */
import type { components } from "./schema.js";

export type Problem = components["schemas"]["Problem"] & { code?: string; [extra: string]: unknown };
export type FieldProblem = components["schemas"]["FieldProblem"];

/**
 * An error answer of the gateway (or a request that got no answer: `status` 0). It carries the
 * problem document: `status`, `title`, `detail`, `errors` (for a 422, each field at fault with its
 * `loc`, e.g. `["body", "params", "batch_size"]`), `code` when the gateway names one, and the
 * `retryAfterS` the answer asked for.
 */
export class GpurelayError extends Error {
  override readonly name = "GpurelayError";
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly type: string;
  readonly code: string | undefined;
  readonly errors: FieldProblem[];
  readonly problem: Problem;
  readonly retryAfterS: number | undefined;

  constructor(problem: Problem, options: { retryAfterS?: number; cause?: unknown } = {}) {
    super(`${problem.status} ${problem.title}: ${problem.detail}`, { cause: options.cause });
    this.problem = problem;
    this.status = problem.status;
    this.title = problem.title;
    this.detail = problem.detail;
    this.type = problem.type ?? "about:blank";
    this.code = typeof problem.code === "string" ? problem.code : undefined;
    this.errors = problem.errors ?? [];
    this.retryAfterS = options.retryAfterS;
  }

  /** The field error whose `loc` (without its leading "body") is `path`, e.g. `"params.batch_size"`. */
  fieldError(path: string): FieldProblem | undefined {
    return this.errors.find((e) => e.loc.filter((p) => p !== "body").join(".") === path);
  }

  /** The problem of an error answer: its problem+json body, else its status line and text. */
  static async fromResponse(response: Response): Promise<GpurelayError> {
    const text = await response.text().catch(() => "");
    return GpurelayError.fromBody(response.status, response.statusText, text, retryAfterS(response.headers.get("retry-after")));
  }

  /** The problem of a status and a body read elsewhere (an XMLHttpRequest's). */
  static fromBody(status: number, statusText: string, text: string, retryAfter?: number): GpurelayError {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const options = retryAfter === undefined ? {} : { retryAfterS: retryAfter };
    if (isProblem(body)) return new GpurelayError(body, options);
    const detail = text.slice(0, 500) || statusText || "The request failed.";
    return new GpurelayError({ type: "about:blank", status, title: statusText || "Error", detail }, options);
  }

  /** A request that got no answer (the network, an abort). */
  static unreachable(url: string, cause: unknown): GpurelayError {
    const reason = cause instanceof Error ? cause.message : String(cause);
    const detail = `${redact(url)}: ${reason}`;
    return new GpurelayError({ type: "about:blank", status: 0, title: "No answer", detail }, { cause });
  }
}

/** An error of a live session's socket: `{"type": "error", "code", "message"}`, or the socket's end. */
export class SessionError extends Error {
  override readonly name = "SessionError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

function isProblem(body: unknown): body is Problem {
  return typeof body === "object" && body !== null && typeof (body as { status?: unknown }).status === "number";
}

/** `Retry-After` in seconds: a number of seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterS(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

/** A URL without its query (stream tokens and signatures stay out of messages). */
export function redact(url: string): string {
  const cut = url.indexOf("?");
  return cut < 0 ? url : `${url.slice(0, cut)}?…`;
}
