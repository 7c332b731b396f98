/** @gpurelay/client: gpurelay from a browser (with a scoped token) or a Node server (with an API key). */
export { createClient, type ClientOptions, type GpurelayClient } from "./client.js";
export { GpurelayError, SessionError, type FieldProblem, type Problem } from "./errors.js";
export { JOB_EVENT_TYPES, TERMINAL_EVENT_TYPES, type EventEnvelope, type JobEvent, type SubscribeOptions } from "./events.js";
export type { Credential, RequestOptions } from "./http.js";
export type { CreateJob, Job, JobKind, JobList, JobSpec, JobStatus, ListJobs, WaitOptions } from "./jobs.js";
export type { EventSourceConstructor, Sent, WebSocketConstructor, XMLHttpRequestConstructor } from "./runtime.js";
export type { components, paths } from "./schema.js";
export { LiveSession } from "./live_session.js";
export type { Ack, FrameOptions, SessionEvents, SessionOptions } from "./socket_messages.js";
export type { Session, SessionKind, SplatParams, StartSession, VlmParams } from "./sessions.js";
export { BrowserKeyError, type CreateToken, type Scope, type Token } from "./tokens.js";
export type { PresignedUpload, Upload, UploadBody, UploadOptions, UploadProgress } from "./uploads.js";
