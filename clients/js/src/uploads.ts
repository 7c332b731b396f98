/**
 * Uploads: declare the file, send its bytes straight to the pre-signed URL (object storage, not the
 * gateway), then complete it. In a browser the bytes go through XMLHttpRequest, whose upload
 * progress events drive `onProgress`; elsewhere through fetch (progress: 0, then all of it). The
 * bytes are sent whole again after an answer of "not now" (429, 503: S3's SlowDown) or none at all,
 * as the client retries its other calls.
 */
import { GpurelayError, retryAfterS } from "./errors.js";
import { FIRST_BACKOFF_MS, RETRIED, type Transport } from "./http.js";
import { delay, type Sent, type XMLHttpRequestConstructor } from "./runtime.js";
import type { components } from "./schema.js";

export type Upload = Sent<components["schemas"]["UploadOut"]>;
export type PresignedUpload = Sent<components["schemas"]["PresignedUpload"]>;

export interface UploadProgress {
  /** Bytes sent so far. */
  loaded: number;
  /** The file's size. */
  total: number;
}

export interface UploadOptions {
  /** The file's name (default: a File's own name, else "upload"). */
  filename?: string;
  /** Its media type (default: a Blob's own type); one the gateway accepts: video/mp4, image/png, application/zip, ... */
  contentType?: string;
  onProgress?: (progress: UploadProgress) => void;
  signal?: AbortSignal;
}

export type UploadBody = Blob | ArrayBuffer | ArrayBufferView;

export class Uploads {
  constructor(
    private readonly http: Transport,
    private readonly XHR: XMLHttpRequestConstructor | undefined,
  ) {}

  /** Upload `file` and complete it: the completed upload, whose `id` is a job input (`{upload_id}`). */
  async upload(file: UploadBody, options: UploadOptions = {}): Promise<Upload> {
    const blob = file instanceof Blob ? file : new Blob([file as BlobPart]);
    const filename = options.filename ?? (file as { name?: unknown }).name ?? "upload";
    const contentType = options.contentType || blob.type || "application/octet-stream";
    const signed = await this.http.request<PresignedUpload>("POST", "/v1/uploads", {
      json: { filename: String(filename), content_type: contentType, size: blob.size },
      signal: options.signal,
    });
    const report = options.onProgress ?? (() => undefined);
    report({ loaded: 0, total: blob.size });
    await this.send(signed, blob, report, options.signal);
    report({ loaded: blob.size, total: blob.size });
    return this.http.request<Upload>("POST", `/v1/uploads/${encodeURIComponent(signed.id)}/complete`, {
      signal: options.signal,
    });
  }

  /** An upload's record. */
  get(id: string, options: { signal?: AbortSignal } = {}): Promise<Upload> {
    return this.http.request<Upload>("GET", `/v1/uploads/${encodeURIComponent(id)}`, options);
  }

  /** The bytes to the pre-signed URL, sent again from the start (a Blob reads from its start each time,
   * and a PUT of the same bytes changes nothing) up to `maxRetries` times, progress back at 0. */
  private async send(
    signed: PresignedUpload,
    blob: Blob,
    report: (progress: UploadProgress) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const { maxRetries, maxRetryDelayMs } = this.http.options;
    for (let attempt = 0; ; attempt += 1) {
      try {
        if (this.XHR) await this.putWithProgress(this.XHR, signed, blob, report, signal);
        else await this.put(signed, blob, signal);
        return;
      } catch (error) {
        const notNow = error instanceof GpurelayError && (error.status === 0 || RETRIED.has(error.status));
        if (!notNow || signal?.aborted || attempt >= maxRetries) throw error;
        const asked = error.retryAfterS;
        const waitMs = asked !== undefined ? asked * 1000 : FIRST_BACKOFF_MS * 2 ** attempt;
        await delay(Math.min(waitMs, maxRetryDelayMs), signal);
        report({ loaded: 0, total: blob.size });
      }
    }
  }

  private async put(signed: PresignedUpload, blob: Blob, signal?: AbortSignal): Promise<void> {
    const headers = signedHeaders(signed);
    let response: Response;
    try {
      response = await this.http.options.fetch(signed.url, { method: signed.method, headers, body: blob, signal: signal ?? null });
    } catch (cause) {
      throw GpurelayError.unreachable(signed.url, cause);
    }
    if (!response.ok) throw await GpurelayError.fromResponse(response);
    await response.body?.cancel().catch(() => undefined);
  }

  private putWithProgress(
    XHR: XMLHttpRequestConstructor,
    signed: PresignedUpload,
    blob: Blob,
    report: (progress: UploadProgress) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const xhr = new XHR();
      xhr.open(signed.method, signed.url);
      for (const [name, value] of Object.entries(signedHeaders(signed))) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) report({ loaded: e.loaded, total: blob.size });
      };
      xhr.onload = () => {
        signal?.removeEventListener("abort", abort);
        const asked = retryAfterS(xhr.getResponseHeader("retry-after"));
        if (xhr.status >= 200 && xhr.status < 300) resolve();
        else reject(GpurelayError.fromBody(xhr.status, xhr.statusText, xhr.responseText, asked));
      };
      xhr.onerror = () => reject(GpurelayError.unreachable(signed.url, new Error("the upload was interrupted")));
      xhr.onabort = () => reject(GpurelayError.unreachable(signed.url, signal?.reason ?? new Error("aborted")));
      const abort = (): void => xhr.abort();
      signal?.addEventListener("abort", abort, { once: true });
      xhr.send(blob);
    });
  }
}

/** The headers the signed request must carry, less Content-Length (the platform sets it). */
function signedHeaders(signed: PresignedUpload): Record<string, string> {
  return Object.fromEntries(Object.entries(signed.headers).filter(([name]) => name.toLowerCase() !== "content-length"));
}
