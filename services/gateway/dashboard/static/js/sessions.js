// Live sessions: start one, send frames over its WebSocket (from a video file or the camera),
// watch its events; a splat session's latest PLY is shown in a Spark 3D view refreshed on each
// snapshot, a vlm session's answers are listed as they come.
import { api, clearProblem, currentToken, el, showProblem } from "/static/js/api.js";
import { orbitPose, SplatView } from "/static/js/splat_view.js";

const form = document.getElementById("start-session");
const box = document.getElementById("s-problem");
const preview = document.getElementById("s-preview");
const $ = (id) => document.getElementById(id);
let session = null, socket = null, timer = null, sent = 0, acked = 0, snapshots = 0, view = null, poses = "orbit";

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
  session = created;
  $("session").hidden = false;
  $("s-id").textContent = created.id;
  $("s-state").textContent = created.state;
  $("s-splat").hidden = created.kind !== "splat";
  $("s-results").hidden = created.kind !== "vlm";
  if (created.kind === "splat") {
    try { view = new SplatView($("splat-canvas")); } catch (e) { $("splat-note").textContent = `The 3D view needs WebGL: ${e.message}`; }
  }
  socket = new WebSocket(`${created.urls.stream}?after=1`); // from its first event: its ready may come first
  socket.binaryType = "arraybuffer";
  socket.onopen = () => socket.send(JSON.stringify({ auth: currentToken() }));
  socket.onmessage = (m) => onMessage(JSON.parse(m.data));
  socket.onclose = (e) => logLine(`socket closed (${e.code})`);
}

async function onMessage(message) {
  if (message.type === "ack") { acked += 1; $("s-acked").textContent = acked; return; }
  if (message.type === "error") { logLine(`error ${message.code}: ${message.message}`); return; }
  if (message.type !== "event") return;
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
  if (["job.succeeded", "job.failed", "job.canceled"].includes(envelope.type)) { $("s-state").textContent = envelope.type.slice(4); stopFrames(); }
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
