/**
 * The live PLY as points: positions and colours out of a binary little-endian PLY (the splat's
 * Gaussians: x, y, z and the SH DC colour f_dc_0..2), and a slowly turning point view of them.
 */

export interface Points {
  count: number;
  positions: Float32Array;
  colors: Float32Array;
}

const SIZES: Record<string, number> = { char: 1, uchar: 1, short: 2, ushort: 2, int: 4, uint: 4, float: 4, double: 8 };
const SH_C0 = 0.28209479177387814;

export function parsePly(buffer: ArrayBuffer): Points {
  const bytes = new Uint8Array(buffer);
  const end = new TextDecoder().decode(bytes.subarray(0, 4096)).indexOf("end_header\n");
  if (end < 0) throw new Error("not a PLY");
  const header = new TextDecoder().decode(bytes.subarray(0, end)).split("\n");
  if (!header.includes("format binary_little_endian 1.0")) throw new Error("only binary little-endian PLYs");
  const count = Number(header.find((l) => l.startsWith("element vertex"))?.split(" ")[2] ?? 0);
  const offsets: Record<string, number> = {};
  let stride = 0;
  for (const line of header.filter((l) => l.startsWith("property "))) {
    const [, type, name] = line.split(" ");
    offsets[name] = stride;
    stride += SIZES[type] ?? 4;
  }
  const view = new DataView(buffer, end + "end_header\n".length);
  const positions = new Float32Array(count * 3);
  const colors = new Float32Array(count * 3);
  for (let i = 0; i < count; i++) {
    for (let axis = 0; axis < 3; axis++) {
      positions[i * 3 + axis] = view.getFloat32(i * stride + offsets["xyz"[axis]], true);
      const dc = offsets[`f_dc_${axis}`];
      colors[i * 3 + axis] = dc === undefined ? 1 : Math.min(1, Math.max(0, 0.5 + SH_C0 * view.getFloat32(i * stride + dc, true)));
    }
  }
  return { count, positions, colors };
}

/** Draw `points` on `canvas`, seen from a camera turning around their centre by `angle` radians. */
export function drawPoints(canvas: HTMLCanvasElement, points: Points, angle: number): void {
  const g = canvas.getContext("2d");
  if (!g) return;
  g.fillStyle = "#000";
  g.fillRect(0, 0, canvas.width, canvas.height);
  if (points.count === 0) return;
  const centre = [0, 1, 2].map((a) => mean(points.positions, a, points.count));
  const radius = Math.max(1e-6, ...Array.from({ length: points.count }, (_, i) => Math.hypot(...[0, 1, 2].map((a) => points.positions[i * 3 + a] - centre[a]))));
  const scale = (0.45 * Math.min(canvas.width, canvas.height)) / radius;
  const [c, s] = [Math.cos(angle), Math.sin(angle)];
  for (let i = 0; i < points.count; i++) {
    const [x, y, z] = [0, 1, 2].map((a) => points.positions[i * 3 + a] - centre[a]);
    const [u, depth] = [c * x + s * z, -s * x + c * z];
    const shade = 0.6 + 0.4 * (1 - (depth / radius + 1) / 2);
    const rgb = [0, 1, 2].map((a) => Math.round(255 * shade * points.colors[i * 3 + a]));
    g.fillStyle = `rgb(${rgb.join(",")})`;
    g.fillRect(canvas.width / 2 + u * scale, canvas.height / 2 - y * scale, 2, 2);
  }
}

function mean(values: Float32Array, axis: number, count: number): number {
  let sum = 0;
  for (let i = 0; i < count; i++) sum += values[i * 3 + axis];
  return sum / count;
}
