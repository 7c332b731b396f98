// Results as pictures: lap_compare's speed profile and per-segment deltas (uPlot), pose's court
// minimap with each player's trail; a video the browser cannot decode says so next to its link.

const COLOURS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"];

// options.xPad: how far the x axis reaches past the first and the last x (bars: half a bar's step, so
// the edge bars are drawn whole); the chart says it in data-span once drawn.
function chart(target, title, xs, ys, options = {}) {
  const width = Math.max(280, target.clientWidth || 600);
  const pad = options.xPad || 0;
  const opts = {
    title, width, height: 220,
    scales: { x: pad ? { time: false, range: (u, min, max) => [min - pad, max + pad] } : { time: false } },
    hooks: { ready: [(u) => (target.dataset.span = JSON.stringify([u.scales.x.min - xs[0], u.scales.x.max - xs.at(-1)]))] },
    series: [{ label: options.xLabel || "x" }, { label: options.yLabel || "y", stroke: "#1f5fbf", width: 2, ...(options.series || {}) }],
    axes: [{ label: options.xLabel }, { label: options.yLabel }],
  };
  target.replaceChildren();
  const plot = new window.uPlot(opts, [xs, ys], target);
  target.dataset.points = String(xs.length);
  return plot;
}

async function lapCharts(box) {
  const metrics = await (await fetch(box.dataset.source)).json();
  const frames = metrics.video.frames;
  chart(document.getElementById("speed-chart"), "Speed profile", frames.map((f) => f.time_s), frames.map((f) => f.speed),
    { xLabel: "time (s)", yLabel: "speed (px/s)" });
  const segments = metrics.alignment ? metrics.alignment.segments : [];
  const delta = document.getElementById("delta-chart");
  if (!segments.length) {
    delta.textContent = "Submit the job with a reference lap to see per-segment deltas.";
    delta.dataset.points = "0";
    return;
  }
  const bars = window.uPlot.paths.bars({ size: [0.7, 60] });
  chart(delta, "Per-segment delta", segments.map((s) => s.index + 1), segments.map((s) => s.delta_s),
    { xLabel: "segment", yLabel: "delta (s)", xPad: 0.5, series: { paths: bars, fill: "#f5823199", stroke: "#f58231" } });
}

function project(h, x, y) {
  if (!h) return [x, y];
  const w = h[2][0] * x + h[2][1] * y + h[2][2];
  return [(h[0][0] * x + h[0][1] * y + h[0][2]) / w, (h[1][0] * x + h[1][1] * y + h[1][2]) / w];
}

async function poseMinimap(box) {
  const canvas = document.getElementById("minimap");
  if (!canvas) return;
  const results = await (await fetch(box.dataset.source)).json();
  const court = results.courtDetection || {};
  const h = court.found ? court.homography : null;
  const [cw, ch] = h ? [6.1, 13.4] : [results.videoWidth || 1, results.videoHeight || 1];
  const ctx = canvas.getContext("2d");
  const sx = canvas.width / cw, sy = canvas.height / ch;
  ctx.fillStyle = "#2e6b3a"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.strokeRect(1, 1, canvas.width - 2, canvas.height - 2);
  ctx.beginPath(); ctx.moveTo(0, canvas.height / 2); ctx.lineTo(canvas.width, canvas.height / 2); ctx.stroke();
  Object.values(results.players || {}).forEach((player, k) => {
    ctx.strokeStyle = COLOURS[k % COLOURS.length]; ctx.lineWidth = 2; ctx.beginPath();
    (player.frames || []).forEach((f, i) => {
      const [x, y] = project(h, (f.box[0] + f.box[2]) / 2, f.box[3]);
      if (i === 0) ctx.moveTo(x * sx, y * sy); else ctx.lineTo(x * sx, y * sy);
    });
    ctx.stroke();
  });
  canvas.dataset.players = String(Object.keys(results.players || {}).length);
}

function watchVideos(box) {
  for (const video of box.querySelectorAll("video")) {
    const cannot = () => {
      const note = video.parentElement.querySelector(".video-note");
      if (note) note.textContent = "(this browser cannot decode the video's codec: download it from the artifacts)";
    };
    video.addEventListener("error", cannot);  // a decode error once a source was chosen
    const sources = video.querySelectorAll("source");  // each failing source gets its own error event
    if (sources.length) sources[sources.length - 1].addEventListener("error", cannot);
  }
}

export async function drawResults() {
  const box = document.getElementById("results");
  if (!box || box.dataset.drawn) return;
  box.dataset.drawn = "1";
  watchVideos(box);
  if (!box.dataset.source) return;
  if (box.dataset.kind === "lap_compare") await lapCharts(box);
  if (box.dataset.kind === "pose") await poseMinimap(box);
}
