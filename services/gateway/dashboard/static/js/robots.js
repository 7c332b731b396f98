// Robots: the chosen robot's latest joint angles, read twice a second, with a sparkline per joint.
import { api, el } from "/static/js/api.js";

const NAMES = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"];
const KEEP = 120;
const grid = document.getElementById("joints");
const note = document.getElementById("robot-note");
let robot = document.getElementById("robot-id").value;
let history = [];
let plots = [];
let timer = null;

function sparkline(target, label) {
  const opts = { width: 200, height: 60, legend: { show: false }, cursor: { show: false },
    scales: { x: { time: false } }, axes: [{ show: false }, { show: false }], series: [{}, { label, stroke: "#1f5fbf", width: 1.5 }] };
  return new window.uPlot(opts, [[], []], target);
}

function build(count) {
  grid.replaceChildren();
  plots = [];
  for (let j = 0; j < count; j++) {
    const name = NAMES[j] || `joint ${j + 1}`;
    const box = el("div", { class: "joint", "data-joint": String(j) }, el("strong", {}, name), " ", el("output", { id: `joint-${j}` }, "–"));
    grid.append(box);
    plots.push(sparkline(box, name));
  }
}

async function poll() {
  if (!robot) return;
  const r = await api(`/v1/robots/${encodeURIComponent(robot)}/joints/latest`);
  if (!r.ok) { note.textContent = r.status === 404 ? `No joint angles from ${robot} yet.` : (r.body && r.body.detail) || "Unavailable."; return; }
  note.textContent = "";
  const sample = r.body;
  const angles = sample.joint_angles || [];
  if (plots.length !== angles.length) { build(angles.length); history = []; }
  const last = history[history.length - 1];
  if (!last || last.seq !== sample.seq || last.ts !== sample.ts) history = [...history, sample].slice(-KEEP);
  document.getElementById("robot-when").textContent = sample.ts ? `(${new Date(sample.ts * 1000).toLocaleTimeString()})` : "";
  const xs = history.map((_, i) => i);
  angles.forEach((a, j) => {
    document.getElementById(`joint-${j}`).textContent = `${a.toFixed(3)} rad`;
    plots[j].setData([xs, history.map((s) => s.joint_angles[j])]);
  });
}

document.getElementById("robot-pick").addEventListener("submit", (event) => {
  event.preventDefault();
  robot = document.getElementById("robot-id").value.trim();
  history = [];
  poll();
});

function start() { if (!timer) timer = setInterval(poll, 500); poll(); }
document.addEventListener("visibilitychange", () => { if (document.hidden) { clearInterval(timer); timer = null; } else start(); });
start();
