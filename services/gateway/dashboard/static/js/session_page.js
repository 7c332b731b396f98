// One session: its SSE stream (urls.events) reloads the panel when the session ends (recording,
// comparison); export submits a session_export job and opens it, replay starts a replay and opens it.
import { api, clearProblem, showProblem } from "/static/js/api.js";
import { follow } from "/static/js/live.js";

const root = document.getElementById("session");
const problem = document.getElementById("action-problem");
const replay = document.getElementById("replay");
const END = ["job.succeeded", "job.failed", "job.canceled"];
let stop = () => {};

async function ended() {
  stop();
  root.dataset.terminal = "true";
  await window.htmx.ajax("GET", `/sessions/${root.dataset.session}/panel?settle=true`, { target: "#panel", swap: "innerHTML" });
  replay.disabled = false;
}

// A fresh events URL (its stream token) for a page open longer than the last one lives.
async function eventsUrl() {
  const r = await api(`/v1/sessions/${root.dataset.session}`);
  return r.ok ? r.body.urls.events : null;
}

document.getElementById("export-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblem(problem);
  const format = document.getElementById("export-format").value;
  const r = await api("/v1/jobs", { method: "POST", json: { kind: "session_export", params: { session_id: root.dataset.session, format } } });
  if (r.ok) window.location.assign(`/jobs/${r.body.id}`); else showProblem(problem, r.body);
});

document.getElementById("replay-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblem(problem);
  let params;
  try { params = JSON.parse(document.getElementById("replay-params").value || "{}"); } catch {
    showProblem(problem, { detail: "The params are not JSON." });
    return;
  }
  const chosen = document.getElementById("replay-speed").value;
  const body = { params, speed: chosen === "max" ? "max" : Number(chosen) };
  const r = await api(`/v1/sessions/${root.dataset.session}/replay`, { method: "POST", json: body });
  if (r.ok) window.location.assign(`/sessions/${r.body.id}`); else showProblem(problem, r.body);
});

if (root.dataset.terminal !== "true") stop = follow({ url: root.dataset.events, refresh: eventsUrl, types: END, onEvent: ended });
