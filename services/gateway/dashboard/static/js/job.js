// One job, live: its SSE stream (urls.events, a stream token) moves the progress bar, the stage, the
// ETA and the event log; the terminal event reloads the details panel (artifacts, results).
import { api, el } from "/static/js/api.js";
import { follow } from "/static/js/live.js";
import { drawResults } from "/static/js/results.js";

const root = document.getElementById("job");
const bar = document.getElementById("job-progress");
const percent = document.getElementById("job-percent");
const statusEl = document.getElementById("job-status");
const stage = document.getElementById("job-stage");
const message = document.getElementById("job-message");
const eta = document.getElementById("job-eta");
const log = document.getElementById("event-log");
const cancel = document.getElementById("cancel");
const queue = document.getElementById("job-queue");
const TERMINAL = { "job.succeeded": "succeeded", "job.failed": "failed", "job.canceled": "canceled" };
const STATUS = { "job.queued": "queued", "job.dispatched": "dispatched", "job.started": "running", "job.retrying": "retrying" };
let startedAt = root.dataset.started ? Date.parse(root.dataset.started) : null;
let stop = null;

function setStatus(status) {
  statusEl.textContent = status;
  statusEl.className = `status s-${status}`;
}

function setFraction(fraction) {
  bar.value = fraction;
  percent.textContent = `${Math.round(fraction * 100)} %`;
  if (startedAt && fraction > 0.02 && fraction < 1) {
    const left = ((Date.now() - startedAt) / fraction) * (1 - fraction);
    eta.textContent = `${Math.max(1, Math.round(left / 1000))} s`;
  } else if (fraction >= 1) eta.textContent = "done";
}

// The wording of services/common/queue_place.py (queue_place_text), which renders it server-side.
function ordinal(n) {
  const suffix = n % 100 >= 10 && n % 100 <= 20 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th";
  return `${n}${suffix}`;
}

function queuePlaceText(place) {
  const text = `${ordinal(Number(place.position ?? 1))} in line`;
  if (place.eta_s === null || place.eta_s === undefined) return text;
  const s = Number(place.eta_s);
  const about = s < 90 ? `${s.toFixed(0)} s` : s < 5400 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`;
  return `${text}, about ${about}`;
}

function note(type, envelope) {
  const data = envelope.data || {};
  const text = data.message || (data.error && `${data.error.code}: ${data.error.message || ""}`) || data.name || "";
  const when = (envelope.time || "").replace("T", " ").slice(0, 19);
  log.append(el("li", { "data-type": type }, `${when} ${type}${text ? " — " + text : ""}`));
  log.scrollTop = log.scrollHeight;
}

async function refreshPanel() {
  await window.htmx.ajax("GET", `/jobs/${root.dataset.job}/panel?settle=true`, { target: "#panel", swap: "innerHTML" });
}

function onEvent(type, raw) {
  let envelope;
  try { envelope = JSON.parse(raw); } catch { return; }
  note(type, envelope);
  const data = envelope.data || {};
  if (type === "job.started") { startedAt = Date.parse(envelope.time) || Date.now(); }
  if (STATUS[type]) setStatus(STATUS[type]);
  if ((type === "job.position" || type === "job.queued") && typeof data.position === "number") {
    queue.textContent = queuePlaceText(data);
    queue.hidden = false;
  } else if (type !== "job.queued" && type !== "job.created" && type !== "job.log") queue.hidden = true;
  if (type === "job.progress") {
    setStatus("running");
    if (typeof data.fraction === "number") setFraction(data.fraction);
    if (data.stage) stage.textContent = data.stage;
    if (data.message) message.textContent = data.message;
  }
  if (type === "job.stage" && data.name) stage.textContent = data.name;
  if (TERMINAL[type]) {
    setStatus(TERMINAL[type]);
    if (type === "job.succeeded") setFraction(1);
    message.textContent = ""; // the last progress message ("uploading artifacts") no longer says what happens
    cancel.hidden = true;
    root.dataset.terminal = "true";
    stop();
    refreshPanel();
  }
}

const TYPES = ["job.created", "job.queued", "job.position", "job.dispatched", "job.started", "job.progress", "job.log", "job.artifact",
  "job.stage", "job.retrying", "job.cancel_requested", "job.succeeded", "job.failed", "job.canceled"];

// A fresh events URL (its stream token) for a page open longer than the last one lives.
async function eventsUrl() {
  const r = await api(`/v1/jobs/${root.dataset.job}`);
  return r.ok ? r.body.urls.events : null;
}

cancel.addEventListener("click", async () => {
  cancel.disabled = true;
  const r = await api(root.dataset.cancel, { method: "POST" });
  document.getElementById("cancel-note").textContent = r.ok ? "Cancellation requested." : (r.body && r.body.detail) || "Refused.";
  if (!r.ok) cancel.disabled = false;
});

document.body.addEventListener("htmx:afterSwap", (e) => { if (e.target.id === "panel") drawResults(); });
stop = follow({ url: root.dataset.events, refresh: eventsUrl, types: TYPES, onEvent });
drawResults();
