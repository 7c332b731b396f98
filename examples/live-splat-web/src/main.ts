/**
 * The live-splat app's flow on gpurelay's native session API (@gpurelay/client): a `splat` session,
 * frames from a video file (every 1/fps seconds of it, each exactly once) or the camera (live, one in
 * flight at a time) over the session socket with their capture time, the worker's figures live,
 * and the live PLY drawn as points each time the worker writes a snapshot. The robot's joint angles
 * (its LeRobot loop, see examples/lerobot_loop.py) pose the frames. The page holds only a
 * short-lived token from its app server.
 */
import { createClient, type LiveSession } from "@gpurelay/client";
import { pageCredential } from "../../shared/page_token";
import { drawPoints, parsePly, type Points } from "./ply";

const element = <T extends Element = HTMLElement>(id: string) => document.getElementById(id) as unknown as T;
const input = (id: string) => element<HTMLInputElement>(id);
const status = element("status");
const source = element<HTMLVideoElement>("source");
const counts = { sent: 0, acks: 0 };
let session: LiveSession | undefined;
let camera: number | undefined;
let cameraFrame: Promise<unknown> = Promise.resolve(); // the camera frame being grabbed or sent, if any
let points: Points = { count: 0, positions: new Float32Array(), colors: new Float32Array() };

const gpurelay = createClient(await pageCredential());

function show(id: string, value: unknown): void {
  element(id).textContent = value === undefined ? "–" : String(value);
}

async function start(): Promise<LiveSession> {
  const robotId = input("robot").value.trim() || undefined;
  const live = await gpurelay.sessions.start({
    kind: "splat",
    robotId,
    // The robot's joint samples and the page's frames share a clock only as well as two machines
    // do: a quarter second either way still finds each frame's sample.
    params: { steps_per_frame: Number(input("steps").value), snapshot_every_s: 1, joint_tolerance_ms: 250 },
  });
  live.on("progress", ({ data }) => {
    const figures = (data.metrics ?? {}) as Record<string, number>;
    show("frame-count", figures.frame_count);
    show("gaussians", figures.gaussian_count);
    show("psnr", figures.psnr === undefined ? undefined : Number(figures.psnr).toFixed(1));
  });
  live.on("snapshot", () => void refreshPly(live.id));
  live.on("error", (error) => (status.textContent = `Session error: ${error.message}`));
  for (const id of ["stop", "reset"]) element<HTMLButtonElement>(id).disabled = false;
  status.textContent = `Session ${live.id} live`;
  element("figures").dataset.session = live.id;
  return live;
}

/** The session's latest snapshot (its record carries a download URL), drawn as points. */
async function refreshPly(id: string): Promise<void> {
  const record = await gpurelay.sessions.get(id);
  if (!record.snapshot?.url) return;
  points = parsePly(await (await fetch(record.snapshot.url)).arrayBuffer());
  show("ply-points", points.count);
}

/** The current picture of `video`, `width` pixels wide, as a JPEG. */
function grab(video: HTMLVideoElement, width: number): Promise<Blob> {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = Math.round((width * video.videoHeight) / video.videoWidth);
  canvas.getContext("2d")!.drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("no frame"))), "image/jpeg", 0.9));
}

async function send(live: LiveSession, frame: Blob): Promise<void> {
  show("sent", ++counts.sent);
  await live.sendFrame(frame, { ts: Date.now() / 1000 });
  show("acks", ++counts.acks);
}

function seek(video: HTMLVideoElement, t: number): Promise<void> {
  return new Promise((resolve) => {
    video.addEventListener("seeked", () => resolve(), { once: true });
    video.currentTime = t;
  });
}

async function streamFile(): Promise<void> {
  const file = input("video-file").files?.[0];
  if (!file) throw new Error("pick a video file first");
  source.src = URL.createObjectURL(file);
  await new Promise((resolve) => source.addEventListener("loadeddata", resolve, { once: true }));
  const live = (session ??= await start());
  const fps = Number(input("fps").value);
  for (let i = 0; i / fps < source.duration; i++) {
    await seek(source, i / fps);
    await send(live, await grab(source, Number(input("width").value)));
  }
  status.textContent = `Sent the file's ${counts.sent} frames; the session goes on until you stop it.`;
}

async function streamCamera(): Promise<void> {
  const button = element<HTMLButtonElement>("start-camera");
  button.disabled = true; // one camera loop: a second click would send every frame twice
  try {
    source.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    await source.play();
  } catch (error) {
    button.disabled = false;
    throw error;
  }
  const live = (session ??= await start());
  let inFlight = false;
  camera = window.setInterval(() => {
    if (inFlight) return; // the socket is behind: skip this tick rather than queue
    inFlight = true;
    cameraFrame = grab(source, Number(input("width").value))
      .then((frame) => send(live, frame))
      .catch((error: Error) => (status.textContent = `Frame refused: ${error.message}`))
      .finally(() => (inFlight = false));
  }, 1000 / Number(input("fps").value));
}

async function stop(): Promise<void> {
  if (!session) return;
  for (const id of ["stop", "reset"]) element<HTMLButtonElement>(id).disabled = true;
  window.clearInterval(camera);
  await cameraFrame; // a frame grabbed before Stop goes out (and is acknowledged) before the stop
  (source.srcObject as MediaStream | null)?.getTracks().forEach((track) => track.stop());
  status.textContent = "Stopping: the worker writes its final outputs…";
  await session.stop();
  const done = await session.finished();
  await refreshPly(done.id);
  show("gaussians", (done.result as Record<string, unknown> | null)?.gaussian_count);
  status.textContent = `Session ${done.status}`;
  element("figures").dataset.state = done.status;
  session.close();
}

const failed = (error: Error) => (status.textContent = `Failed: ${error.message}`);
element("start-file").addEventListener("click", () => streamFile().catch(failed));
element("start-camera").addEventListener("click", () => streamCamera().catch(failed));
element("stop").addEventListener("click", () => stop().catch(failed));
element("reset").addEventListener("click", () => session?.reset().catch(failed));

let angle = 0;
const turn = () => {
  drawPoints(element<HTMLCanvasElement>("viewer"), points, (angle += 0.01));
  requestAnimationFrame(turn);
};
requestAnimationFrame(turn);
