// The 3D view of a splat session: Spark (a maintained 3D Gaussian splatting renderer on three.js)
// showing the latest PLY snapshot, replaced on each new one, around a slowly turning camera.
import * as THREE from "three";
import { SparkRenderer, SplatMesh } from "@sparkjsdev/spark";

const ORBIT_RADIUS = 2.0, ORBIT_HEIGHT = 0.6, ORBIT_STEP = 0.05;

// A camera→world pose (row-major 4×4, OpenCV axes) on a circle around the origin looking at it:
// what the sessions page sends with a handheld video's frames when no robot poses them.
export function orbitPose(index) {
  const a = index * ORBIT_STEP;
  const c = [ORBIT_RADIUS * Math.cos(a), ORBIT_RADIUS * Math.sin(a), ORBIT_HEIGHT];
  const norm = (v) => { const n = Math.hypot(...v); return v.map((x) => x / n); };
  const cross = (u, v) => [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
  const z = norm(c.map((x) => -x));
  const x = norm(cross(z, [0, 0, 1]));
  const y = cross(z, x);
  return [x[0], y[0], z[0], c[0], x[1], y[1], z[1], c[1], x[2], y[2], z[2], c[2], 0, 0, 0, 1];
}

export class SplatView {
  constructor(canvas) {
    this.canvas = canvas;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: false, preserveDrawingBuffer: true });
    this.renderer.setClearColor(0x101418, 1);
    this.scene = new THREE.Scene();
    this.scene.add(new SparkRenderer({ renderer: this.renderer }));
    this.camera = new THREE.PerspectiveCamera(60, canvas.width / canvas.height, 0.01, 100);
    this.camera.up.set(0, 0, 1);
    this.mesh = null;
    this.angle = 0;
    this.renderer.setAnimationLoop(() => this.frame());
  }

  frame() {
    this.angle += 0.004;
    this.camera.position.set(2.6 * Math.cos(this.angle), 2.6 * Math.sin(this.angle), 1.2);
    this.camera.lookAt(0, 0, 0);
    this.renderer.render(this.scene, this.camera);
  }

  async show(bytes) {
    const mesh = new SplatMesh({ fileBytes: bytes, fileType: "ply" });
    await mesh.initialized;
    this.clear();
    this.mesh = mesh;
    this.scene.add(mesh);
    this.canvas.dataset.snapshots = String(Number(this.canvas.dataset.snapshots || 0) + 1);
    return mesh.numSplats ?? 0;
  }

  clear() {
    if (!this.mesh) return;
    this.scene.remove(this.mesh);
    this.mesh.dispose();
    this.mesh = null;
  }
}
