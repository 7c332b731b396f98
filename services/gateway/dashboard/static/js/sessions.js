// Live sessions: start one, send frames over its WebSocket (from a video file or the camera),
// watch its events; a splat session's latest PLY is shown in a Spark 3D view refreshed on each
// snapshot, a vlm session's answers are listed as they come. A socket that closes before the
// session ends, or stays silent for the page's idle time (a ping after half of it goes unanswered:
// a host gone without closing), is opened again after its last event (`?after=`) on a fresh token;
// frames go on over the new one (one in flight at the drop is not sent again: a live feed).
import { api, clearProblem, currentToken, el, refreshToken, showProblem } from "/static/js/api.js";
import { BACKOFF_MS, IDLE_MS } from "/static/js/live.js";
import { orbitPose, SplatView } from "/static/js/splat_view.js";

const form = document.getElementById("start-session");
const box = document.getElementById("s-problem");
const preview = document.getElementById("s-preview");
const $ = (id) => document.getElementById(id);
let session = null, socket = null, timer = null, sent = 0, acked = 0, snapshots = 0, view = null, poses = "orbit";
let after = 1, ended = false, drops = 0, pinging = null, silent = null; // the socket's resume point and watch

function logLine(text) {
  $("s-log").append(el("li", {}, text));
  $("s-log").scrollTop = $("s-log").scrollHeight;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblem(box, form);
  let params;
  try { params = JSON.parse(form.elements.params.value || "{}"); } catch (e) { showProblem(box, { detail: `More params: ${e.message}` }, form); return; }
  const kind = form.elements.kind.value;
  if (kind === "vlm" && form.elements.prompt.value.trim()) params.prompt = form.elements.prompt.value.trim();
  const body = { kind, params };
  if (form.elements.robot_id.value.trim()) body.robot_id = form.elements.robot_id.value.trim();
  const r = await api("/v1/sessions", { method: "POST", json: body });
  if (!r.ok) { showProblem(box, r.body, form); return; }
  poses = form.elements.poses.value;
  open(r.body);
});

function open(created) {
  if (socket) { socket.onclose = socket.onmessage = null; socket.close(); watchOff(); } // the page's last session
  session = created;
  ended = false;
  drops = 0;
  $("session").hidden = false;
  $("s-id").textContent = created.id;
  $("s-state").textContent = created.state;
  $("s-splat").hidden = created.kind !== "splat";
  $("s-results").hidden = created.kind !== "vlm";
  if (created.kind === "splat") {
    try { view = new SplatView($("splat-canvas")); } catch (e) { $("splat-note").textContent = `The 3D view needs WebGL: ${e.message}`; }
  }
  after = 1; // from its first event: its ready may come first
  connect();
}

// The session's socket on this page's origin (the gateway's, as urls.stream names it; a proxy or another
// host name in front of it serves it too).
function streamUrl() {
  const url = new URL(session.urls.stream, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.host = location.host;
  url.searchParams.set("after", String(after));
  return url.href;
}

function connect() {
  socket = new WebSocket(streamUrl());
  socket.binaryType = "arraybuffer";
  socket.onopen = () => { socket.send(JSON.stringify({ auth: currentToken() })); heard(); };
  socket.onmessage = (m) => { heard(); onMessage(JSON.parse(m.data)); };
  socket.onclose = (e) => {
    watchOff();
    if (ended) { logLine(`socket closed (${e.code})`); return; }
    const wait = BACKOFF_MS[Math.min(drops, BACKOFF_MS.length - 1)];
    logLine(`socket closed (${e.code}); opening it again in ${wait / 1000} s`);
    drops += 1;
    setTimeout(() => reopen(session), wait);
  };
}

async function reopen(of) {
  try { await refreshToken(); } catch { return; } // signed out: the sign-in page opens
  if (!ended && session === of) connect(); // not when another session was started meanwhile
}

// Anything the socket brings shows it alive: a ping after half the idle time of silence, and a socket
// still silent at its end is dropped (its close would wait on a peer that is gone) and opened again.
function heard() {
  watchOff();
  if (IDLE_MS <= 0 || ended) return;
  pinging = setTimeout(() => { if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" })); }, IDLE_MS / 2);
  silent = setTimeout(() => {
    const dead = socket;
    dead.onclose = dead.onmessage = null;
    dead.close();
    logLine("socket silent; opening it again");
    connect();
  }, IDLE_MS);
}

function watchOff() { clearTimeout(pinging); clearTimeout(silent); }

async function onMessage(message) {
  if (message.type === "pong") return;
  if (message.type === "ack") { acked += 1; drops = 0; $("s-acked").textContent = acked; return; }
  if (message.type === "error") { logLine(`error ${message.code}: ${message.message}`); return; }
  if (message.type !== "event") return;
  if (Number.isInteger(message.seq) && message.seq > after) after = message.seq;
  const envelope = message.event, data = envelope.data || {};
  logLine(`${envelope.type}${data.message ? " — " + data.message : ""}`);
  if (envelope.type === "session.ready") $("s-state").textContent = "live"; // the worker's model is loaded
  if (envelope.type === "job.retrying") $("s-state").textContent = "starting"; // a new attempt resumes it
  if (envelope.type === "job.progress" && data.metrics) {
    const m = data.metrics;
    $("s-metrics").textContent = ["gaussians", "frames_used", "frames_without_pose", "psnr", "results"].filter((k) => k in m).map((k) => `${k} ${m[k]}`).join(" · ");
  }
  if (envelope.type === "session.snapshot") { snapshots += 1; $("s-snapshots").textContent = snapshots; await showSnapshot(data.artifact, data.seq); }
  if (envelope.type === "session.result") $("vlm-results").append(el("li", {}, `#${data.chunk} (frames ${data.first_seq}–${data.last_seq}): ${data.text}`));
  if (["job.succeeded", "job.failed", "job.canceled"].includes(envelope.type)) {
    ended = true;
    watchOff();
    $("s-state").textContent = envelope.type.slice(4);
    stopFrames();
  }
}

let showing = false;

// The announced snapshot (or a newer one), once the session's record holds it (the dashboard's read waits for that).
async function showSnapshot(artifact, seq) {
  if (!view || !artifact || !artifact.sha256 || showing) return;
  showing = true;
  try { await load(artifact.sha256, seq); } finally { showing = false; }
}

async function load(sha256, seq) {
  const after = Number.isInteger(seq) ? `&seq=${seq}` : "";
  const r = await fetch(`/sessions/${session.id}/snapshot?sha256=${sha256}${after}`, { credentials: "same-origin" });
  if (!r.ok) { $("splat-note").textContent = `No snapshot yet (${r.status}).`; return; }
  const bytes = new Uint8Array(await r.arrayBuffer());
  const count = await view.show(bytes);
  $("splat-note").textContent = `${count} Gaussians`;
}

function sendFrame() {
  if (!socket || socket.readyState !== WebSocket.OPEN || preview.readyState < 2 || preview.ended) return;
  const canvas = document.createElement("canvas");
  const scale = Math.min(1, 320 / (preview.videoWidth || 320));
  canvas.width = Math.round((preview.videoWidth || 320) * scale);
  canvas.height = Math.round((preview.videoHeight || 240) * scale);
  canvas.getContext("2d").drawImage(preview, 0, 0, canvas.width, canvas.height);
  const index = sent;
  canvas.toBlob(async (blob) => {
    if (!blob) return;
    const body = await blob.arrayBuffer();
    // The socket may close (stop, the session's end) while the frame is encoded: a header is sent only
    // with its body, both or neither.
    if (socket.readyState !== WebSocket.OPEN) return;
    const header = { type: "frame", ts: Date.now() / 1000 };
    if (session.kind === "splat" && poses === "orbit") header.pose = orbitPose(index);
    socket.send(JSON.stringify(header));
    socket.send(body);
    sent += 1; $("s-sent").textContent = sent;
  }, "image/jpeg", 0.85);
}

function startFrames() {
  stopFrames();
  const fps = Math.min(30, Math.max(1, Number($("s-fps").value) || 5));
  timer = setInterval(sendFrame, 1000 / fps);
}

function stopFrames() { if (timer) clearInterval(timer); timer = null; }

$("s-video").addEventListener("change", async () => {
  const file = $("s-video").files[0];
  if (!file) return;
  preview.srcObject = null;
  preview.src = URL.createObjectURL(file);
  preview.loop = false;
  await preview.play().catch((e) => logLine(`the video cannot play here: ${e.message}`));
  startFrames();
});

$("s-camera").addEventListener("click", async () => {
  try {
    preview.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640 }, audio: false });
    await preview.play();
    startFrames();
  } catch (e) { logLine(`no camera: ${e.message}`); }
});

async function control(action) {
  const r = await api(session.urls[action], { method: "POST" });
  logLine(r.ok ? `${action} requested` : `${action} refused: ${(r.body && r.body.detail) || r.status}`);
  if (action === "stop") stopFrames();
  if (action === "reset" && view) view.clear();
}

$("s-stop").addEventListener("click", () => control("stop"));
$("s-reset").addEventListener("click", () => control("reset"));
