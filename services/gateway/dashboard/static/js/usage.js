// The usage page's chart: GPU-seconds (bars, left axis) and cost in USD (line, right axis) per day,
// from the figures the page was rendered with (GET /v1/usage, grouped by day). The time axis reaches
// half a day past the first and the last day, so their bars are drawn whole, not cut at the edges.

const HALF_DAY_S = 43200;

const data = JSON.parse(document.getElementById("usage-data").textContent);
const target = document.getElementById("usage-chart");

function draw() {
  const xs = data.days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
  const bars = window.uPlot.paths.bars({ size: [0.6, 40] });
  const opts = {
    width: Math.max(280, target.clientWidth || 600),
    height: 240,
    scales: { x: { time: true, range: (u, min, max) => [min - HALF_DAY_S, max + HALF_DAY_S] } },
    hooks: {
      ready: [(u) => (target.dataset.span = JSON.stringify([u.scales.x.min - xs[0], u.scales.x.max - xs.at(-1)]))],
    },
    series: [
      { label: "day" },
      { label: "GPU-seconds", scale: "s", stroke: "#1f5fbf", fill: "#1f5fbf55", paths: bars },
      { label: "cost $", scale: "usd", stroke: "#f58231", width: 2, value: (u, v) => (v == null ? "" : v.toFixed(4)) },
    ],
    axes: [{}, { scale: "s", label: "GPU-s" }, { scale: "usd", side: 1, label: "USD", grid: { show: false } }],
  };
  target.replaceChildren();
  new window.uPlot(opts, [xs, data.gpu_seconds, data.cost_usd], target);
  target.dataset.points = String(xs.length);
}

if (window.uPlot) draw();
else window.addEventListener("load", draw);
