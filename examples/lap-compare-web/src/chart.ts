/** The speed chart: each lap's speed (px/s) over its own time, as SVG polylines on shared axes. */

export interface FramePoint {
  time_s: number;
  speed: number;
}

const SVG = "http://www.w3.org/2000/svg";
const PAD = 32;

/** Draw `laps` (name → frames) into `svg` (its viewBox sets the size); one polyline per lap. */
export function drawSpeeds(svg: SVGSVGElement, laps: Record<string, FramePoint[]>): void {
  const { width, height } = svg.viewBox.baseVal;
  const all = Object.values(laps).flat();
  const maxT = Math.max(1e-9, ...all.map((f) => f.time_s));
  const maxV = Math.max(1e-9, ...all.map((f) => f.speed));
  const x = (t: number) => PAD + (t / maxT) * (width - 2 * PAD);
  const y = (v: number) => height - PAD - (v / maxV) * (height - 2 * PAD);
  svg.replaceChildren(axis(PAD, height - PAD, width - PAD, height - PAD), axis(PAD, PAD, PAD, height - PAD));
  svg.append(label(width - PAD, height - 8, `${maxT.toFixed(1)} s`), label(PAD + 4, PAD - 8, `${maxV.toFixed(0)} px/s`));
  for (const [name, frames] of Object.entries(laps)) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", name);
    line.setAttribute("data-lap", name);
    line.setAttribute("points", frames.map((f) => `${x(f.time_s).toFixed(1)},${y(f.speed).toFixed(1)}`).join(" "));
    const title = document.createElementNS(SVG, "title");
    title.textContent = name;
    line.append(title);
    svg.append(line);
  }
}

function axis(x1: number, y1: number, x2: number, y2: number): SVGLineElement {
  const line = document.createElementNS(SVG, "line");
  for (const [k, v] of Object.entries({ x1, y1, x2, y2 })) line.setAttribute(k, String(v));
  line.setAttribute("stroke", "#8a93a6");
  return line;
}

function label(xPos: number, yPos: number, text: string): SVGTextElement {
  const node = document.createElementNS(SVG, "text");
  node.setAttribute("x", String(xPos));
  node.setAttribute("y", String(yPos));
  node.setAttribute("font-size", "11");
  node.setAttribute("text-anchor", xPos > PAD + 4 ? "end" : "start");
  node.textContent = text;
  return node;
}
